"""Writes each public IQA dataset in miniature, in its official layout and file types, with tiny generated images.

Annotation files are written the way the authors distribute them (CSV with their headers, SPAQ's XLSX via openpyxl,
LIVEC's and AIGCIQA-2023's MAT files via scipy.io.savemat, LIVEC's names as a MATLAB cell array), so the loaders
are tested on the real formats. Each builder returns the dataset folder and the raw scores it wrote, keyed by the
image name as the annotation file gives it.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

ATTRIBUTES = ("Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness")


@dataclass
class Fixture:
    folder: Path
    raw: dict[str, float]  # image name -> score as written in the annotation file
    extra: dict = field(default_factory=dict)


def write_image(path: Path, quality: float, seed: int, size: int = 16) -> Path:
    """A small image whose noise falls as ``quality`` (0-1) rises, over a gradient that varies with ``seed``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size)
    base = np.stack(
        [np.add.outer(ramp, ramp) / 2, np.add.outer(ramp[::-1], ramp) / 2, np.full((size, size), (seed * 37) % 256)],
        axis=-1,
    )
    noise = rng.normal(0, 90 * (1 - quality), base.shape)
    pixels = np.clip(base + noise, 0, 255).astype("uint8")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path)
    return path


def _scores(n: int, low: float, high: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.uniform(low + 0.05 * (high - low), high - 0.05 * (high - low)), 4) for _ in range(n)]


def make_koniq10k(root: Path, n: int = 12, *, sets: bool = True, scores: bool = True) -> Fixture:
    folder = root / "koniq10k"
    names = [f"{1000000 + 7919 * i}.jpg" for i in range(n)]
    mos = _scores(n, 1.0, 5.0, 1)
    for i, (name, value) in enumerate(zip(names, mos, strict=True)):
        write_image(folder / "1024x768" / name, (value - 1) / 4, i)
    if scores:
        with (folder / "koniq10k_scores_and_distributions.csv").open("w", newline="") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)  # the original quotes every string
            writer.writerow(["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"])
            for name, value in zip(names, mos, strict=True):
                writer.writerow([name, 1, 4, 40, 50, 5, 100, value, 0.6, (value - 1) * 25])
    labels = [("training", "validation", "test", "training", "training")[i % 5] for i in range(n)]
    if sets:
        with (folder / "koniq10k_distributions_sets.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "set"])
            for name, value, label in zip(names, mos, labels, strict=True):
                writer.writerow([name, 1, 4, 40, 50, 5, 100, (value - 1) * 25, 15.0, label])
    return Fixture(folder, dict(zip(names, mos, strict=True)), {"sets": dict(zip(names, labels, strict=True))})


def make_spaq(root: Path, n: int = 12) -> Fixture:
    from openpyxl import Workbook

    folder = root / "spaq"
    names = [f"{i + 1:05d}.jpg" for i in range(n)]
    mos = _scores(n, 0, 100, 2)
    attributes = {a: _scores(n, 0, 100, 20 + k) for k, a in enumerate(ATTRIBUTES)}
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Image name", "MOS", *ATTRIBUTES])
    for i, name in enumerate(names):
        sheet.append([name, mos[i], *(attributes[a][i] for a in ATTRIBUTES)])
        write_image(folder / "TestImage" / name, mos[i] / 100, 100 + i)
    (folder / "Annotations").mkdir(parents=True, exist_ok=True)
    workbook.save(folder / "Annotations" / "MOS and Image attribute scores.xlsx")
    per_image = {name: {a.lower(): attributes[a][i] for a in ATTRIBUTES} for i, name in enumerate(names)}
    return Fixture(folder, dict(zip(names, mos, strict=True)), {"attributes": per_image})


def make_livec(root: Path, n: int = 12, folder_name: str = "livec") -> Fixture:
    import numpy as np
    from scipy.io import savemat

    folder = root / folder_name
    training = [f"t{i}.bmp" for i in range(1, 8)]
    names = [f"{100 + i}.{'bmp' if i % 2 else 'JPG'}" for i in range(n)]
    mos = _scores(7 + n, 0, 100, 3)
    for i, name in enumerate(training):
        write_image(folder / "Images" / "trainingImages" / name, mos[i] / 100, 200 + i)
    for i, name in enumerate(names):
        write_image(folder / "Images" / name, mos[7 + i] / 100, 210 + i)
    cells = np.empty((7 + n, 1), dtype=object)  # a MATLAB cell array of char arrays, as in the release
    for i, name in enumerate(training + names):
        cells[i, 0] = name
    (folder / "Data").mkdir(parents=True, exist_ok=True)
    savemat(folder / "Data" / "AllImages_release.mat", {"AllImages_release": cells})
    savemat(folder / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([mos])})
    savemat(folder / "Data" / "AllStdDev_release.mat", {"AllStdDev_release": np.full((1, 7 + n), 15.0)})
    return Fixture(folder, dict(zip(names, mos[7:], strict=True)), {"training": training})


def make_flive(root: Path, n: int = 12) -> Fixture:
    folder = root / "flive"
    patterns = ("voc_emotic_ava/VOC2012__2008_{:06d}.jpg", "AVA__{}.jpg", "EE371R/{:06d}.jpg", "blur_dataset/{}.jpg")
    names = [patterns[i % 4].format(i) for i in range(n)]
    mos = _scores(n, 0, 100, 4)
    folder.mkdir(parents=True)
    with (folder / "labels_image.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "mos", "width", "height", "top", "left", "bottom", "right", "zscores"])
        for i, name in enumerate(names):
            writer.writerow([name, mos[i], 16, 16, 0, 0, 16, 16, 0.1 * i])
            write_image(folder / "database" / name, mos[i] / 100, 300 + i)
    return Fixture(folder, dict(zip(names, mos, strict=True)))


def make_kadid10k(root: Path, references: int = 5, types: int = 2, levels: int = 2) -> Fixture:
    folder = root / "kadid10k"
    rows = []
    seed = 0
    for ref in range(1, references + 1):
        write_image(folder / "images" / f"I{ref:02d}.png", 1.0, 400 + ref)
        for kind in range(1, types + 1):
            for level in range(1, levels + 1):
                dmos = round(5.0 - 0.7 * level - 0.1 * kind + 0.05 * ref, 3)
                name = f"I{ref:02d}_{kind:02d}_{level:02d}.png"
                rows.append((name, f"I{ref:02d}.png", dmos, 0.5))
                write_image(folder / "images" / name, (dmos - 1) / 4, 500 + seed)
                seed += 1
    with (folder / "dmos.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dist_img", "ref_img", "dmos", "var"])
        writer.writerows(rows)
    return Fixture(folder, {name: dmos for name, _, dmos, _ in rows})


def make_agiqa3k(root: Path, n: int = 12) -> Fixture:
    folder = root / "agiqa3k"
    models = ("AttnGAN", "DALLE2", "glide", "midjourney", "sd1.5", "sdxl")
    names = [f"{models[i % 6]}_normal_{i:03d}.{'png' if i % 3 == 0 else 'jpg'}" for i in range(n)]
    quality = _scores(n, 0, 5, 5)
    folder.mkdir(parents=True)
    with (folder / "data.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "prompt", "adj1", "adj2", "style", "mos_quality", "std_quality", "mos_align"]
                        + ["std_align"])  # fmt: skip
        for i, name in enumerate(names):
            style = "anime style" if i % 4 == 0 else ""
            prompt = f"a cat doing karaoke, {style}" if style else "a cat doing karaoke"
            writer.writerow([name, prompt, "", "", style, quality[i], 0.5, 2.5, 0.6])
            write_image(folder / name, quality[i] / 5, 600 + i)
    return Fixture(folder, dict(zip(names, quality, strict=True)))


def make_aigciqa2023(root: Path, n: int = 12, folder_name: str = "aigciqa2023", index: bool = True) -> Fixture:
    import numpy as np
    from openpyxl import Workbook
    from scipy.io import savemat

    folder = root / folder_name
    quality = _scores(n, 20, 80, 6)
    for i in range(n):
        write_image(folder / "Image" / "allimg" / f"{i}.png", quality[i] / 100, 700 + i)
    (folder / "DATA" / "MOS").mkdir(parents=True)
    (folder / "DATA" / "STD").mkdir(parents=True)
    for k, values in enumerate((quality, _scores(n, 20, 80, 7), _scores(n, 20, 80, 8)), 1):
        savemat(folder / "DATA" / "MOS" / f"mosz{k}.mat", {"MOSz": np.array(values).reshape(-1, 1)})
        savemat(folder / "DATA" / "STD" / f"SD{k}.mat", {"SD": np.full((n, 1), 10.0)})
    if index:
        workbook = Workbook()
        models = ("Controlnet", "DALLE", "Glide", "Lafite", "stable-diffusion", "Unidiffuser")
        for i in range(n):
            workbook.active.append([models[i * 6 // n], f"{i}.png"])  # no header row
        workbook.save(folder / "pic-index.xlsx")
    return Fixture(folder, {f"allimg/{i}.png": q for i, q in enumerate(quality)})


def make_cgiqa6k(root: Path, n: int = 12, subfolders: bool = False) -> Fixture:
    folder = root / "cgiqa6k"
    names = [f"{'game' if i % 2 == 0 else 'movie'}_{i // 2:04d}.jpg" for i in range(n)]
    mos = _scores(n, 0, 5, 9)
    folder.mkdir(parents=True)
    with (folder / "mos.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mos"])
        for i, name in enumerate(names):
            writer.writerow([name, mos[i]])
            sub = (name.split("_")[0],) if subfolders else ()
            write_image(folder.joinpath("database", *sub, name), mos[i] / 5, 800 + i)
    return Fixture(folder, dict(zip(names, mos, strict=True)))


BUILDERS = {
    "koniq10k": make_koniq10k,
    "spaq": make_spaq,
    "flive": make_flive,
    "livec": make_livec,
    "cgiqa6k": make_cgiqa6k,
    "kadid10k": make_kadid10k,
    "agiqa3k": make_agiqa3k,
    "aigciqa2023": make_aigciqa2023,
}


def build_all(root: Path) -> dict[str, Fixture]:
    """Every dataset under ``root``; LIVEC and AIGCIQA-2023 under the authors' own folder names."""
    fixtures = {name: builder(root) for name, builder in BUILDERS.items() if name not in ("livec", "aigciqa2023")}
    fixtures["livec"] = make_livec(root, folder_name="ChallengeDB_release")
    fixtures["aigciqa2023"] = make_aigciqa2023(root, folder_name="AIGCIQA2023")
    return fixtures

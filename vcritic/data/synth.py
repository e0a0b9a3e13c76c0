"""``vcritic data synth``: KADID-style distortions of the user's own pristine images, and stage-1 pairs from them.

Each source image is distorted by every kind at levels 1..N (N = 5 by default); level L has strength
``s = L / N`` and the kind's parameter is a fixed function of ``s`` (below), so level N is the same severity whatever
N is. Everything is PIL/numpy. Synthetic MOS: pristine 100, level L of N ``100 * (1 - L / (N + 1))`` (83.3, 66.7,
50, 33.3, 16.7 for N = 5): it orders the versions of one source and one kind, and says nothing across kinds.

Pairs are written only where the order is certain: same source and kind, different level (the lower level is
better), and the pristine image against any distortion of it. A kind that does not change a source visibly from
one level to the next (mean absolute step under :data:`MIN_CHANGE`: saturation of a grey photo, darkening a black
one) is dropped for that source, so no pair of near-identical images claims an order.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcritic.base.csvio import Writer
from vcritic.base.files import open_atomically
from vcritic.errors import UsageError, VcriticError

LEVELS = 5
DATASET = "synth"


def _blur(image, s: float, noise):
    from PIL import ImageFilter

    return image.filter(ImageFilter.GaussianBlur(radius=4.0 * s))  # radius 0.8 .. 4 px


def _noise(image, s: float, noise):
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float32) + noise * (50.0 * s)  # sigma 10 .. 50 of 255
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


def _jpeg(image, s: float, noise):
    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=max(1, round(90 - 85 * s)))  # quality 73 .. 5
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def _scale(image, factor: float, offset: float):
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float32) * factor + offset
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


def _darken(image, s: float, noise):
    return _scale(image, 1.0 - 0.7 * s, 0.0)  # x * 0.86 .. x * 0.3


def _brighten(image, s: float, noise):
    return _scale(image, 1.0 - 0.7 * s, 255.0 * 0.7 * s)  # towards white, 14% .. 70% of the way


def _contrast(image, s: float, noise):
    from PIL import ImageEnhance

    return ImageEnhance.Contrast(image).enhance(1.0 - 0.8 * s)  # 84% .. 20% of the contrast


def _saturation(image, s: float, noise):
    from PIL import ImageEnhance

    return ImageEnhance.Color(image).enhance(1.0 - 0.9 * s)  # 82% .. 10% of the colour


def _downscale(image, s: float, noise):
    from PIL import Image

    factor = 1.0 + 7.0 * s  # down by 2.4x .. 8x, then back up
    small = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
    return image.resize(small, Image.Resampling.BILINEAR).resize(image.size, Image.Resampling.BILINEAR)


# name -> function(image, strength in (0, 1], unit gaussian noise field shaped like the image)
KINDS: dict[str, Callable] = {
    "blur": _blur,
    "noise": _noise,
    "jpeg": _jpeg,
    "darken": _darken,
    "brighten": _brighten,
    "contrast": _contrast,
    "saturation": _saturation,
    "downscale": _downscale,
}


def synthetic_mos(level: int, levels: int) -> float:
    """Pristine (level 0) 100, then evenly spaced down to 100 / (levels + 1) at the strongest level."""
    return 100.0 * (1.0 - level / (levels + 1))


def distort(image, kind: str, level: int, levels: int = LEVELS, seed: int = 0):
    """``image`` (RGB) with one distortion at ``level`` of ``levels``; the noise field depends only on ``seed``."""
    import numpy as np

    if kind not in KINDS:
        raise VcriticError(f"unknown distortion {kind!r}", hint=f"known: {', '.join(KINDS)}")
    noise = np.random.default_rng(seed).standard_normal((image.height, image.width, 3)).astype(np.float32)
    return KINDS[kind](image, level / levels, noise)


def parse_kinds(text: str | None) -> list[str]:
    if not text:
        return list(KINDS)
    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise VcriticError(f"unknown distortion {', '.join(unknown) or text!r}", hint=f"known: {', '.join(KINDS)}")
    return list(dict.fromkeys(kinds))


def prepare_source(image, size: int | None):
    """RGB; with ``size``, centre-cropped to a square and resized to ``size`` x ``size``."""
    from PIL import Image, ImageOps

    if size is None:
        return image
    return ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)


@dataclass(frozen=True)
class Version:
    path: str  # relative to the output folder
    mos: float
    ref_id: str
    kind: str  # "" for the pristine image
    level: int  # 0 for the pristine image


def _ref_ids(sources: Sequence[Path], src: Path) -> list[str]:
    """A file-name-safe id per source, from its path below ``src`` (a/b.jpg -> a_b), unique."""
    ids: list[str] = []
    used: set[str] = set()
    for path in sources:
        try:
            rel = path.relative_to(src)
        except ValueError:
            rel = Path(path.name)
        base = "_".join(rel.with_suffix("").parts)
        base = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in base) or "image"
        ref, n = base, 2
        while ref in used:
            ref, n = f"{base}_{n}", n + 1
        used.add(ref)
        ids.append(ref)
    return ids


MIN_CHANGE = 0.5  # mean absolute difference (of 255) between neighbouring levels that counts as a visible step


def _write_versions(
    out: Path, pristine, ref: str, kinds: Sequence[str], levels: int, seed: int
) -> tuple[list[Version], list[str]]:
    """Save the pristine image and its distortions; a kind that leaves the image (nearly) unchanged between two
    neighbouring levels is dropped for this source (saturation of a grey photo, darkening a black one), so every
    pair written later has a certain order. Returns the versions written and the kinds dropped."""
    import numpy as np

    name = f"images/{ref}.png"
    pristine.save(out / name)
    versions = [Version(name, 100.0, ref, "", 0)]
    dropped = []
    for k, kind in enumerate(kinds):
        # The same noise field at every level of a source, so a higher level only adds to it.
        images = [distort(pristine, kind, level, levels, seed=seed + k) for level in range(1, levels + 1)]
        arrays = [np.asarray(im, dtype=np.float32) for im in (pristine, *images)]
        if any(float(np.abs(a - b).mean()) < MIN_CHANGE for a, b in zip(arrays, arrays[1:], strict=False)):
            dropped.append(kind)
            continue
        for level, image in enumerate(images, 1):
            name = f"images/{ref}_{kind}_{level}.png"
            image.save(out / name)
            versions.append(Version(name, synthetic_mos(level, levels), ref, kind, level))
    return versions, dropped


def certain_pairs(versions: Sequence[Version]):
    """(better, worse) for every pair whose order is certain: same source and kind, or pristine vs distorted."""
    from vcritic.data.relativity import OrderedPair

    by_ref: dict[str, list[Version]] = {}
    for v in versions:
        by_ref.setdefault(v.ref_id, []).append(v)
    pairs = []
    for ref in sorted(by_ref):
        group = by_ref[ref]
        pristine = [v for v in group if v.level == 0]
        distorted = [v for v in group if v.level > 0]
        for p in pristine:
            for d in distorted:
                pairs.append(OrderedPair(p.path, d.path, {"ref_id": ref, "kind": d.kind, "levels": [0, d.level]}))
        for a in distorted:
            for b in distorted:
                if a.kind == b.kind and a.level < b.level:
                    pairs.append(
                        OrderedPair(a.path, b.path, {"ref_id": ref, "kind": a.kind, "levels": [a.level, b.level]})
                    )
    return pairs


def synthesize(
    src: Path,
    out: Path,
    *,
    levels: int = LEVELS,
    kinds: Sequence[str] | None = None,
    size: int | None = None,
    seed: int = 0,
    val_fraction: float | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write distorted images, ``manifest.csv`` and the stage-1 data folder; returns the ``data.json`` record.

    Unreadable sources are skipped and counted (``skipped`` in the record), never fatal. ``out`` is locked for the
    run, as ``data build`` locks it.
    """
    from vcritic.base.files import locked_folder

    with locked_folder(Path(out).expanduser(), flag="--out"):
        return _synthesize(
            src, out, levels=levels, kinds=kinds, size=size, seed=seed, val_fraction=val_fraction,
            overwrite=overwrite, progress=progress,
        )  # fmt: skip


def _synthesize(
    src: Path,
    out: Path,
    *,
    levels: int,
    kinds: Sequence[str] | None,
    size: int | None,
    seed: int,
    val_fraction: float | None,
    overwrite: bool,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    from PIL import Image

    from vcritic.base.images import UnreadableImageError, find_images, load_image
    from vcritic.data.datadir import (
        DIALOGUES,
        INFO,
        MANIFEST,
        VAL,
        VAL_FRACTION,
        check_out,
        held_out_groups,
        remove_stale,
        rng_for,
        write_data_dir,
        written_before,
    )
    from vcritic.data.relativity import pair_dialogues

    start = time.perf_counter()
    kinds = list(kinds) if kinds else list(KINDS)
    val_fraction = VAL_FRACTION if val_fraction is None else val_fraction
    if levels < 2:
        raise UsageError(f"--levels is {levels}", hint="give at least 2 levels, so pairs within a kind exist")
    if size is not None and size < 8:
        raise UsageError(f"--size is {size}", hint="give at least 8 pixels")
    if not 0 <= val_fraction < 1:
        raise UsageError(f"--val-fraction is {val_fraction}", hint="give a fraction from 0 up to (not including) 1")
    src = Path(src).expanduser()
    if not src.is_dir():
        raise VcriticError(f"no such folder: {src}", hint="SRC_DIR is a folder of pristine images")
    out = Path(out).expanduser()
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise VcriticError(f"--out {out} is inside SRC_DIR", hint="write the output outside the source folder")
    check_out(out, overwrite)
    earlier = written_before(out) if out.is_dir() else set()
    sources = find_images([src])
    if not sources:
        raise VcriticError(f"no images in {src}", hint="SRC_DIR is a folder of pristine images (jpg, png, ...)")

    (out / "images").mkdir(parents=True, exist_ok=True)
    versions: list[Version] = []
    skipped: list[str] = []
    dropped: dict[str, list[str]] = {}
    jobs = [(index, path, ref) for index, (path, ref) in enumerate(zip(sources, _ref_ids(sources, src), strict=True))]

    def one_source(job: tuple[int, Path, str]) -> tuple[list[Version], list[str]] | str:
        index, path, ref = job
        try:
            pristine = prepare_source(load_image(path), size)
        except (UnreadableImageError, OSError, ValueError, Image.DecompressionBombError) as err:
            return f"{path}: {err}"
        return _write_versions(out, pristine, ref, kinds, levels, seed * 1_000_003 + index * 101)

    # PIL releases the GIL while it filters and encodes, so threads give a real speed-up on big sources.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for done, result in enumerate(pool.map(one_source, jobs), 1):
            if isinstance(result, str):
                skipped.append(result)
            else:
                written, lost = result
                versions += written
                if lost:
                    dropped[written[0].ref_id] = lost
            if progress is not None:
                progress(done, len(jobs))
    if not versions:
        raise VcriticError(f"none of the {len(sources)} images in {src} could be read", hint="check the files")

    manifest = out / MANIFEST
    with open_atomically(manifest, newline="") as handle:
        writer = Writer(handle)
        writer.writerow(["path", "mos", "ref_id", "kind", "level"])
        for v in versions:
            writer.writerow([v.path, f"{v.mos:.4f}", v.ref_id, v.kind or "pristine", v.level])

    refs = sorted({v.ref_id for v in versions})
    val_refs = held_out_groups(refs, val_fraction, rng_for(seed, "synth", "val"))
    pairs = certain_pairs(versions)
    rng = rng_for(seed, "synth", "pairs")
    rng.shuffle(pairs)  # a reader that takes the file in order still sees every source and kind mixed
    train = pair_dialogues([p for p in pairs if p.meta["ref_id"] not in val_refs], rng, DATASET)
    val = pair_dialogues([p for p in pairs if p.meta["ref_id"] in val_refs], rng, DATASET)
    info = {
        "stage": 1,
        "seed": seed,
        "datasets": [DATASET],
        "source": "synth",
        "synth": {
            "levels": levels,
            "kinds": kinds,
            "size": size,
            "sources": len(refs),
            "val_sources": sorted(val_refs),
            "dropped": dict(sorted(dropped.items())),  # source -> kinds that did not change it visibly
        },
        "val_fraction": val_fraction,
        "skipped": {DATASET: len(skipped)} if skipped else {},
    }
    record = write_data_dir(out, train, val, info)
    # What an earlier run here wrote and this one did not: the images of a source no longer given, of a kind
    # dropped, of levels beyond --levels. (Those written again were replaced in place.)
    written = [out / name for name in (DIALOGUES, VAL, INFO, MANIFEST)] + [out / v.path for v in versions]
    record["removed"] = remove_stale(out, earlier, written)
    record["images"] = len(versions)
    record["skipped_files"] = skipped
    record["seconds"] = time.perf_counter() - start
    return record

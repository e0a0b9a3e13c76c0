"""The data folder that ``vcritic data build`` and ``vcritic data synth`` write and ``vcritic train`` reads.

Layout::

    DIR/dialogues.jsonl   training dialogues (vcritic.data.dialogues)
    DIR/val.jsonl         held-out dialogues for periodic evaluation: training-split images only (never a dataset's
                          test split), disjoint from the images of dialogues.jsonl
    DIR/manifest.csv      (synth only) path,mos,ref_id,kind,level of every image in DIR/images/
    DIR/data.json         {"format": 1, "stage": N, "seed": .., "datasets": [..], "counts": {task: {dataset: n}},
                           "val_counts": {..}, "val_fraction": .., "skipped": {dataset: n}, ...}

The validation images are a seeded :data:`VAL_FRACTION` of each dataset's training images, drawn by group (a
reference image and all its distorted versions together), so no content is on both sides.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vcritic.base.files import check_output_folder, leftover_temps, write_json_atomically
from vcritic.base.limits import MAX_JSON_BYTES, read_json_object
from vcritic.data.dialogues import Dialogue, read_dialogues, write_dialogues
from vcritic.errors import VcriticError

DATA_FORMAT = 1
VAL_FRACTION = 0.02
DIALOGUES, VAL, INFO = "dialogues.jsonl", "val.jsonl", "data.json"
MANIFEST, IMAGES = "manifest.csv", "images"  # vcritic data synth's too
OWN_FILES = (DIALOGUES, VAL, INFO, MANIFEST)

G = TypeVar("G", bound=Hashable)


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an existing, non-empty ``out`` without ``overwrite`` (before any work is done)."""
    check_output_folder(out, hint="give a new folder for --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise VcriticError(f"{out} already exists and is not empty", hint="pass --overwrite to replace its contents")


def written_before(out: Path) -> set[Path]:
    """The files an earlier ``vcritic data`` run wrote in ``out``, which ``--overwrite`` replaces: the folder's own
    files (:data:`OWN_FILES`, and the new copies a killed write left beside them) and the images a synth
    ``manifest.csv`` lists under ``images/``. Nothing else there is vcritic's: a user's other files are never among
    them."""
    out = out.resolve()
    names = [*OWN_FILES, *(name + ".tmp" for name in OWN_FILES)]
    found = {out / name for name in names if (out / name).is_file()} | set(leftover_temps(out, OWN_FILES))
    images = out / IMAGES
    try:
        with (out / MANIFEST).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return found
    for row in rows:
        path = (out / str(row.get("path") or "")).resolve()  # resolved: no "../" out of images/
        if path.parent == images and path.is_file():
            found.add(path)
    return found


def remove_stale(out: Path, before: set[Path], written: Iterable[Path]) -> int:
    """Delete what an earlier run wrote (``before``) and this run did not write again (a source no longer given, a
    synth run's images under a ``build``); ``images/`` goes too when that leaves it empty. Returns the count."""
    out = out.resolve()
    stale = before - {(out / path).resolve() for path in written}
    for path in stale:
        path.unlink(missing_ok=True)
    images = out / IMAGES
    if stale and images.is_dir() and not any(images.iterdir()):
        images.rmdir()
    return len(stale)


def rng_for(seed: int, *parts: object) -> random.Random:
    """A generator for one purpose (e.g. one dataset's pairs): adding a dataset never changes another's draws.

    String seeds are hashed with SHA-512 by :mod:`random`, so this is the same on every machine and run.
    """
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def held_out_groups(groups: Iterable[G], fraction: float, rng: random.Random) -> set[G]:
    """A seeded ``fraction`` of ``groups`` for validation: at least one when ``fraction`` > 0 and there are two or
    more groups, never all of them."""
    ordered = sorted(set(groups), key=str)
    if fraction <= 0 or len(ordered) < 2:
        return set()
    n = min(max(round(len(ordered) * fraction), 1), len(ordered) - 1)
    return set(rng.sample(ordered, n))


def count_by_task(dialogues: Sequence[Dialogue]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for dialogue in dialogues:
        per_dataset = counts.setdefault(dialogue.task, {})
        per_dataset[dialogue.dataset] = per_dataset.get(dialogue.dataset, 0) + 1
    return {task: dict(sorted(per.items())) for task, per in sorted(counts.items())}


def write_data_dir(
    out: Path, train: Sequence[Dialogue], val: Sequence[Dialogue], info: dict[str, Any]
) -> dict[str, Any]:
    """Write the three files (each atomically; data.json last, so its presence means the folder is complete)."""
    out.mkdir(parents=True, exist_ok=True)
    write_dialogues(out / DIALOGUES, train)
    write_dialogues(out / VAL, val)
    record = {
        "format": DATA_FORMAT,
        **info,
        "counts": count_by_task(train),
        "val_counts": count_by_task(val),
    }
    write_json_atomically(out / INFO, record, ensure_ascii=False)
    return record


def read_info(folder: Path) -> dict[str, Any]:
    """The ``data.json`` of a built folder."""
    path = folder / INFO
    if not path.exists():
        raise VcriticError(
            f"{folder} is not a vcritic data folder (no {INFO})", hint="build it with: vcritic data build"
        )
    record = read_json_object(path, "a data.json", "rebuild the folder", MAX_JSON_BYTES)
    if record.get("format") != DATA_FORMAT:
        raise VcriticError(f"{path} has an unknown format", hint="rebuild the folder with this vcritic version")
    return record


@dataclass
class TrainData:
    """A data folder as ``vcritic train`` reads it: the training and held-out dialogues, the folder their image paths
    are relative to, and its ``data.json`` (empty when it has none)."""

    dialogues: list[Dialogue]
    val: list[Dialogue]
    root: Path
    info: dict[str, Any]


def read_train_data(folder: Path) -> TrainData:
    """A folder written by ``vcritic data build`` / ``vcritic data synth``, for training: dialogues.jsonl, and
    val.jsonl and data.json where they are (a folder of hand-written dialogues may lack them)."""
    folder = Path(folder).expanduser()
    path = folder / DIALOGUES
    if not folder.is_dir():
        raise VcriticError(
            f"--data {folder} is not a folder" if folder.exists() else f"--data: no such folder: {folder}",
            hint="give the folder vcritic data build --out (or data synth) wrote",
        )
    if not path.is_file():
        raise VcriticError(f"{folder} has no {DIALOGUES}", hint="build it with: vcritic data build --out DIR")
    # The small files first: a damaged data.json is refused before the dialogues (up to 4 GiB) are read.
    info: dict[str, Any] = {}
    if (folder / INFO).is_file():
        info = read_json_object(folder / INFO, "a data.json", "rebuild the data", MAX_JSON_BYTES)
    dialogues = list(read_dialogues(path))
    if not dialogues:
        raise VcriticError(f"{path} has no dialogues", hint="rebuild it with: vcritic data build")
    val = list(read_dialogues(folder / VAL)) if (folder / VAL).is_file() else []
    _check_images(folder, dialogues + val)
    return TrainData(dialogues, val, folder, info)


def _check_images(folder: Path, dialogues: list[Dialogue]) -> None:
    """Refuse, before the model loads, dialogues whose images are gone (a moved dataset, a deleted file): found
    mid-run they stopped training with "file not found" and lost the steps since the last checkpoint."""
    names = {name for dialogue in dialogues for name in dialogue.images}
    missing = sorted(
        name for name in names if not (Path(name) if Path(name).is_absolute() else folder / name).is_file()
    )
    if missing:
        raise VcriticError(
            f"{len(missing)} image(s) named in {folder} are missing, e.g. {missing[0]}",
            hint="restore them, or rebuild the data folder with vcritic data build/synth",
        )


def summary_table(record: dict[str, Any], title: str):
    """A Rich table: dialogues per task and dataset (training and validation), with totals."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("task", "dataset", "train", "val"):
        table.add_column(column, justify="right" if column in ("train", "val") else "left")
    counts, val_counts = record["counts"], record["val_counts"]
    for task in sorted(set(counts) | set(val_counts)):
        for dataset in sorted(set(counts.get(task, {})) | set(val_counts.get(task, {}))):
            n_train = counts.get(task, {}).get(dataset, 0)
            n_val = val_counts.get(task, {}).get(dataset, 0)
            table.add_row(task, dataset or "-", str(n_train), str(n_val))
    total = sum(n for per in counts.values() for n in per.values())
    total_val = sum(n for per in val_counts.values() for n in per.values())
    table.add_section()
    table.add_row("total", "", str(total), str(total_val))
    return table

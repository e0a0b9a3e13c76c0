"""Any dataset, as a CSV manifest: one row per image.

Columns (header names are case-insensitive):

- ``path`` (or ``image``, ``image_path``, ``file``, ``filename``): the image, relative to the manifest's folder
  unless absolute. Required.
- ``mos``: the quality score, higher is better. Required. Its range is given by the caller (``--mos-range``,
  default 0-100) and mapped linearly to 0-100.
- ``brightness``, ``colorfulness``, ``contrast``, ``noisiness``, ``sharpness``: optional attribute scores, 0-100.
- ``ai_generated``: optional, true/false (yes/no, 1/0; empty = unknown).
- ``ref_id``: optional reference-image id; splits then keep all images of a reference on one side.
- ``split``: optional train/val/test assignment, used as the dataset's official split.
- ``dataset``: optional dataset name per row (pairs are only drawn within one dataset); default: the file's name.
"""

from __future__ import annotations

from pathlib import Path

from vcritic.datasets.records import (
    ATTRIBUTES,
    Record,
    parse_bool,
    parse_float,
    parse_score,
    pick_column,
    read_csv_table,
    rescale,
)
from vcritic.errors import VcriticError

PATH_COLUMNS = ("path", "image", "image_path", "file", "filename")
SPLITS = {"train": "train", "training": "train", "val": "val", "validation": "val", "test": "test"}


def load_manifest(path: Path, mos_range: tuple[float, float] = (0.0, 100.0)) -> list[Record]:
    """Records from a CSV manifest; ``mos_range`` is the documented range of its ``mos`` column."""
    low, high = mos_range
    if not high > low:
        raise VcriticError(f"MOS range {low:g}-{high:g} is empty", hint="give the lowest and highest possible score")
    header, rows = read_csv_table(path, (), "a CSV manifest with path and mos columns")
    path_column = pick_column(path, header, PATH_COLUMNS, "image path")
    mos_column = pick_column(path, header, ("mos",), "mos")
    lowered = {h.lower(): h for h in header}
    attributes = [(a, lowered[a]) for a in ATTRIBUTES if a in lowered]
    base = path.parent
    default_dataset = path.stem

    records = []
    for number, row in enumerate(rows, 2):
        name = (row[path_column] or "").strip()
        if not name:
            raise VcriticError(f"{path}, line {number}: the {path_column} cell is empty")
        image = Path(name).expanduser()
        split = None
        if "split" in lowered and (row[lowered["split"]] or "").strip():
            text = row[lowered["split"]].strip().lower()
            if text not in SPLITS:
                raise VcriticError(f"{path}, line {number}: split is {text!r}", hint="use train, val or test")
            split = SPLITS[text]
        records.append(
            Record(
                image if image.is_absolute() else base / image,
                rescale(parse_score(row[mos_column], path, f"line {number}, mos", mos_range), low, high),
                (row.get(lowered.get("dataset", ""), "") or "").strip() or default_dataset,
                name,
                attributes={a: parse_float(row[c], path, f"line {number}, {a}") for a, c in attributes},
                ai_generated=parse_bool(row.get(lowered.get("ai_generated", ""), ""), path, f"line {number}"),
                ref_id=(row.get(lowered.get("ref_id", ""), "") or "").strip() or None,
                official_split=split,
            )
        )
    if not records:
        raise VcriticError(f"{path} lists no images", hint="add one row per image under the header")
    return records

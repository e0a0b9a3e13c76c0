"""SPAQ (Fang et al. 2020): 11,125 smartphone photos with MOS and five attribute scores, all 0-100.

Layout as distributed::

    spaq/
      Annotations/MOS and Image attribute scores.xlsx   Image name, MOS, Brightness, Colorfulness, Contrast,
                                                        Noisiness, Sharpness (0-100)
      TestImage/                                        the images (00001.jpg, ...)

SPAQ is the paper's source for the attribute indicators, which keep their 0-100 values.
"""

from __future__ import annotations

from pathlib import Path

from vcritic.datasets.records import (
    ATTRIBUTES,
    DatasetSpec,
    Record,
    check_columns,
    image_path,
    parse_score,
    read_xlsx_rows,
    require_dir,
)
from vcritic.errors import VcriticError

ANNOTATIONS = "Annotations/MOS and Image attribute scores.xlsx"
COLUMNS = ("image name", "mos", *ATTRIBUTES)
MOS_RANGE = (0.0, 100.0)  # MOS and the five attributes alike


def load(root: Path) -> list[Record]:
    path = root / ANNOTATIONS
    rows = read_xlsx_rows(path, "the SPAQ MOS and attribute scores")
    if not rows:
        raise VcriticError(f"{path} is empty", hint="expected a header row and one row per image")
    header = [str(cell).strip().lower() if cell is not None else "" for cell in rows[0]]
    check_columns(path, header, COLUMNS)
    at = {column: header.index(column) for column in COLUMNS}
    images = require_dir(root / "TestImage", "the SPAQ images in TestImage/")

    records = []
    for number, row in enumerate(rows[1:], 2):
        row = (*row, *(None,) * (len(header) - len(row)))  # a short row: its missing cells are empty
        name = str(row[at["image name"]] if row[at["image name"]] is not None else "").strip()
        if not name:
            raise VcriticError(f"{path}: row {number} has no image name", hint="every row names one image")
        mos = parse_score(row[at["mos"]], path, f"row {number}, MOS", MOS_RANGE)
        attributes = {a: parse_score(row[at[a]], path, f"row {number}, {a}", MOS_RANGE) for a in ATTRIBUTES}
        records.append(Record(image_path(images, name), mos, "spaq", name, attributes=attributes, ai_generated=False))
    return records


SPEC = DatasetSpec(
    name="spaq",
    title="SPAQ",
    load=load,
    markers=(ANNOTATIONS,),
    mos_range=MOS_RANGE,
    mos_source="MOS and Image attribute scores.xlsx: MOS (0-100)",
    url="https://github.com/h4nwei/SPAQ",
)

"""AGIQA-3k (Li et al. 2023): 2,982 AI-generated images from six text-to-image models, quality MOS on 0-5.

Layout as distributed::

    agiqa3k/
      data.csv   name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align
      *.jpg      the images, beside data.csv (an images/ or image/ sub-folder is found too)

``mos_quality`` (perceptual quality; ``mos_align`` is text alignment and is not used) is on a documented 0-5 range,
mapped linearly to 0-100; ``std_quality`` (the ratings' spread) becomes ``mos_std``.
"""

from __future__ import annotations

from pathlib import Path

from vcritic.datasets.records import (
    DatasetSpec,
    Record,
    image_path,
    parse_float,
    parse_score,
    read_csv_rows,
    rescale,
    rescale_spread,
)

DATA = "data.csv"
MOS_RANGE = (0.0, 5.0)
IMAGE_FOLDERS = ("", "images", "image", "AGIQA-3K", "AGIQA-3k")


def _image_folder(root: Path, names: list[str]) -> Path:
    """Where the images are: the first candidate folder holding the first listed image (root if none does)."""
    if names:
        for folder in IMAGE_FOLDERS:
            if image_path(root / folder, names[0]).is_file():
                return root / folder if folder else root
    return root


def _spread(row: dict[str, str], path: Path, number: int) -> float | None:
    text = (row.get("std_quality") or "").strip()
    return rescale_spread(parse_float(text, path, f"line {number}, std_quality"), *MOS_RANGE) if text else None


def load(root: Path) -> list[Record]:
    rows = read_csv_rows(root / DATA, ("name", "mos_quality"), "the AGIQA-3k scores (name, mos_quality 0-5)")
    images = _image_folder(root, [row["name"].strip() for row in rows[:1]])
    return [
        Record(
            image_path(images, row["name"].strip()),
            rescale(parse_score(row["mos_quality"], root / DATA, f"line {number}, mos_quality", MOS_RANGE), *MOS_RANGE),
            "agiqa3k",
            row["name"].strip(),
            ai_generated=True,
            mos_std=_spread(row, root / DATA, number),
        )
        for number, row in enumerate(rows, 2)
    ]


SPEC = DatasetSpec(
    name="agiqa3k",
    title="AGIQA-3k",
    load=load,
    markers=(DATA,),
    folders=("agiqa-3k", "agiqa"),
    aliases=("agiqa", "agiqa-3k"),
    mos_range=MOS_RANGE,
    mos_source="data.csv: mos_quality (0-5)",
    ai_generated=True,
    url="https://github.com/lcysyzxdxc/AGIQA-3k-Database",
)

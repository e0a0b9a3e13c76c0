"""FLIVE (PaQ-2-PiQ, Ying et al. 2020): ~40,000 in-the-wild photos, MOS on 0-100.

Layout as distributed (``FLIVE_Database``)::

    flive/
      labels_image.csv   name,mos,... (name is relative to database/, e.g. voc_emotic_ava/VOC2012__2008_000001.jpg)
      database/          the images, in the authors' sub-folders

Images placed directly beside ``labels_image.csv`` (no ``database/`` folder) are found too.
"""

from __future__ import annotations

from pathlib import Path

from vcritic.datasets.records import DatasetSpec, Record, image_path, parse_score, read_csv_rows

LABELS = "labels_image.csv"
MOS_RANGE = (0.0, 100.0)


def load(root: Path) -> list[Record]:
    rows = read_csv_rows(root / LABELS, ("name", "mos"), "the FLIVE image labels (name, mos 0-100)")
    images = root / "database" if (root / "database").is_dir() else root
    return [
        Record(
            image_path(images, row["name"].strip()),
            parse_score(row["mos"], root / LABELS, f"line {number}, mos", MOS_RANGE),
            "flive",
            row["name"].strip(),
            ai_generated=False,
        )
        for number, row in enumerate(rows, 2)
    ]


SPEC = DatasetSpec(
    name="flive",
    title="FLIVE",
    load=load,
    markers=(LABELS,),
    folders=("FLIVE_Database", "paq2piq", "livefb"),
    aliases=("paq2piq", "paq-2-piq", "livefb", "live-fb"),
    mos_range=MOS_RANGE,
    mos_source="labels_image.csv: mos (0-100)",
    url="https://github.com/niu-haoran/FLIVE_Database",
)

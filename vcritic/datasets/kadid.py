"""KADID-10k (Lin et al. 2019): 81 pristine images x 25 distortion types x 5 levels = 10,125 images.

Layout as distributed::

    kadid10k/
      dmos.csv   dist_img,ref_img,dmos,var (DMOS 1-5, higher is better despite the name)
      images/    I01.png (reference 01) and I01_01_01.png (reference 01, distortion 01, level 01), ...

``var`` is the variance of the ratings (1-5 scale); its square root becomes ``mos_std``. The reference id
(``I01``) comes from the distorted image's name; the paper splits by it.
"""

from __future__ import annotations

import re
from pathlib import Path

from vcritic.datasets.records import (
    DatasetSpec,
    Record,
    image_path,
    parse_float,
    parse_score,
    read_csv_rows,
    require_dir,
    rescale,
    rescale_spread,
)

DMOS = "dmos.csv"
MOS_RANGE = (1.0, 5.0)
NAME = re.compile(r"^(?P<ref>[A-Za-z]+\d+)_(?P<type>\d+)_(?P<level>\d+)")


def reference_id(dist_img: str, ref_img: str = "") -> str:
    """``I01_01_01.png`` -> ``I01``; falls back to the ``ref_img`` column's stem."""
    match = NAME.match(Path(dist_img).name)
    if match:
        return match["ref"]
    return Path(ref_img).stem if ref_img else Path(dist_img).stem


def load(root: Path) -> list[Record]:
    rows = read_csv_rows(root / DMOS, ("dist_img", "ref_img", "dmos"), "the KADID-10k scores (dist_img, dmos 1-5)")
    images = require_dir(root / "images", "the KADID-10k images in images/")
    records = []
    for number, row in enumerate(rows, 2):
        name = row["dist_img"].strip()
        dmos = parse_score(row["dmos"], root / DMOS, f"line {number}, dmos", MOS_RANGE)
        var = (row.get("var") or "").strip()
        spread = (
            rescale_spread(parse_float(var, root / DMOS, f"line {number}, var") ** 0.5, *MOS_RANGE) if var else None
        )
        records.append(
            Record(
                image_path(images, name),
                rescale(dmos, *MOS_RANGE),
                "kadid10k",
                name,
                ai_generated=False,
                ref_id=reference_id(name, row["ref_img"].strip()),
                mos_std=spread,
            )
        )
    return records


SPEC = DatasetSpec(
    name="kadid10k",
    title="KADID-10k",
    load=load,
    markers=(DMOS,),
    folders=("kadid-10k", "kadid"),
    aliases=("kadid", "kadid-10k"),
    mos_range=MOS_RANGE,
    mos_source="dmos.csv: dmos (1-5, higher is better)",
    split_by_reference=True,
    url="https://database.mmsp-kn.de/kadid-10k-database.html",
)

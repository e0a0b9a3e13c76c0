"""KonIQ-10k (Hosu et al. 2020): 10,073 in-the-wild photos, crowd-rated on a 1-5 scale.

Layout as distributed::

    koniq10k/
      koniq10k_scores_and_distributions.csv   image_name,c1,...,c5,c_total,MOS,SD,MOS_zscore (MOS 1-5)
      koniq10k_distributions_sets.csv         optional: ...,MOS,SD,set (MOS 0-100; set = training/validation/test)
      1024x768/                               the images (512x384/ is accepted too)

MOS comes from the scores file's ``MOS`` column (1-5, mapped linearly to 0-100), the rating spread from its
``SD``. The sets file, where present, gives the authors' own train/validation/test split (7058/1000/2015);
without the scores file its ``MOS`` and ``SD`` (already 0-100) are used.
"""

from __future__ import annotations

from pathlib import Path

from vcritic.datasets.records import (
    DatasetSpec,
    Record,
    first_dir,
    image_path,
    parse_float,
    parse_score,
    read_csv_rows,
    rescale,
    rescale_spread,
)
from vcritic.errors import VcriticError

SCORES = "koniq10k_scores_and_distributions.csv"
SETS = "koniq10k_distributions_sets.csv"
MOS_RANGE = (1.0, 5.0)
SETS_MOS_RANGE = (0.0, 100.0)  # the sets file gives MOS already rescaled to 0-100
SET_NAMES = {"training": "train", "train": "train", "validation": "val", "val": "val", "test": "test"}


def load(root: Path) -> list[Record]:
    images = first_dir(root, ("1024x768", "512x384"), "the KonIQ-10k images")
    splits: dict[str, str] = {}
    sets_mos: dict[str, float] = {}
    sets_sd: dict[str, float] = {}
    if (root / SETS).is_file():
        for number, row in enumerate(read_csv_rows(root / SETS, ("image_name", "MOS", "set"), "KonIQ-10k sets"), 2):
            name = row["image_name"].strip()
            label = row["set"].strip().lower()
            if label not in SET_NAMES:
                raise VcriticError(
                    f"{root / SETS}, line {number}: set is {row['set']!r}",
                    hint="expected training, validation or test",
                )
            splits[name] = SET_NAMES[label]
            sets_mos[name] = parse_score(row["MOS"], root / SETS, f"line {number}, MOS", SETS_MOS_RANGE)
            if (row.get("SD") or "").strip():
                sets_sd[name] = parse_float(row["SD"], root / SETS, f"line {number}, SD")  # already 0-100

    if (root / SCORES).is_file() or not sets_mos:
        rows = read_csv_rows(root / SCORES, ("image_name", "MOS"), "the KonIQ-10k scores (image_name, MOS 1-5)")
        scores = {
            row["image_name"].strip(): rescale(
                parse_score(row["MOS"], root / SCORES, f"line {n}, MOS", MOS_RANGE), *MOS_RANGE
            )
            for n, row in enumerate(rows, 2)
        }
        spreads = {
            row["image_name"].strip(): rescale_spread(
                parse_float(row["SD"], root / SCORES, f"line {n}, SD"), *MOS_RANGE
            )
            for n, row in enumerate(rows, 2)
            if (row.get("SD") or "").strip()
        }
    else:
        scores, spreads = sets_mos, sets_sd  # the sets file alone: MOS and SD already on 0-100

    return [
        Record(
            image_path(images, name),
            mos,
            "koniq10k",
            name,
            ai_generated=False,
            official_split=splits.get(name),
            mos_std=spreads.get(name, sets_sd.get(name)),
        )
        for name, mos in scores.items()
    ]


SPEC = DatasetSpec(
    name="koniq10k",
    title="KonIQ-10k",
    load=load,
    markers=(SCORES, SETS),
    folders=("koniq-10k", "koniq"),
    aliases=("koniq", "koniq-10k"),
    mos_range=MOS_RANGE,
    mos_source=f"{SCORES}: MOS (1-5)",
    official_split=True,
    url="https://database.mmsp-kn.de/koniq-10k-database.html",
)

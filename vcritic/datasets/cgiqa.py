"""CGIQA-6K (Zhang et al. 2023): 6,000 computer-graphics images (3,000 from games, 3,000 from movies).

Layout as distributed::

    cgiqa6k/
      mos.csv     one row per image: image name, MOS (header row; e.g. ``image,mos``)
      database/   the images (game_0000.jpg ..., movie_0000.jpg ...), possibly in sub-folders

The authors do not document the MOS range in the release. The published scores lie between about 0.3 and 3.9 and
other users of the dataset divide by 5, so vcritic assumes a 0-5 range and maps it linearly to 0-100. The image
column is the one named image/image_name/name/filename (else the first column), the score column mos/score (else
the second). Following the VisualCritic paper, CGIQA-6K counts as generated (non-photographic) content.
"""

from __future__ import annotations

import csv
from pathlib import Path

from vcritic.datasets.records import (
    DatasetSpec,
    Record,
    files_by_name,
    image_path,
    parse_score,
    require_dir,
    require_file,
    rescale,
)
from vcritic.errors import VcriticError

MOS_FILE = "mos.csv"
MOS_RANGE = (0.0, 5.0)
NAME_COLUMNS = ("image", "image_name", "name", "img", "img_name", "filename", "file", "image name")
MOS_COLUMNS = ("mos", "score", "mos_quality")


def _column(header: list[str], candidates: tuple[str, ...], fallback: int) -> int:
    lowered = [h.strip().lower() for h in header]
    for candidate in candidates:
        if candidate in lowered:
            return lowered.index(candidate)
    return fallback


def load(root: Path) -> list[Record]:
    path = require_file(root / MOS_FILE, "the CGIQA-6K scores (image name, MOS)")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if len(rows) < 2 or len(rows[0]) < 2:
        raise VcriticError(f"{path} has no scores", hint="expected a header row, then one image name and MOS per row")
    header = rows[0]
    name_at, mos_at = _column(header, NAME_COLUMNS, 0), _column(header, MOS_COLUMNS, 1)
    images = require_dir(root / "database", "the CGIQA-6K images in database/")
    located = files_by_name(images)
    records = []
    for number, row in enumerate(rows[1:], 2):
        name = row[name_at].strip()
        direct = image_path(images, name)
        where = direct if direct.is_file() else located.get(Path(name).name, direct)
        mos = rescale(parse_score(row[mos_at], path, f"line {number}, MOS", MOS_RANGE), *MOS_RANGE)
        records.append(Record(where, mos, "cgiqa6k", name, ai_generated=True))
    return records


SPEC = DatasetSpec(
    name="cgiqa6k",
    title="CGIQA-6K",
    load=load,
    markers=(MOS_FILE,),
    folders=("cgiqa-6k", "cgiqa"),
    aliases=("cgiqa", "cgiqa-6k"),
    mos_range=MOS_RANGE,
    mos_source="mos.csv: MOS (assumed 0-5)",
    ai_generated=True,
    url="https://github.com/zzc-1998/CGIQA6K",
)

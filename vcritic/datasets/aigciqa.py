"""AIGCIQA-2023 (Wang et al. 2023): 2,400 images from six text-to-image models, rated for quality, authenticity
and text correspondence.

Layout as distributed::

    aigciqa2023/
      DATA/MOS/mosz1.mat   variable MOSz (2400x1): quality; mosz2 = authenticity, mosz3 = correspondence
      Image/allimg/        0.png ... 2399.png, row i of MOSz is image i
      pic-index.xlsx       optional, no header: generator model name, file name (row i = image i)

``MOSz`` holds the authors' z-scores rescaled to 0-100 (observed values roughly 25-75); vcritic takes that 0-100
range as documented and keeps the values as they are (no clipping, no min/max stretch). The paper uses this dataset
as its AI-generated side of authenticity detection.
"""

from __future__ import annotations

from pathlib import Path

from vcritic.datasets.records import (
    DatasetSpec,
    Record,
    image_path,
    load_mat_array,
    parse_score,
    read_xlsx_rows,
    require_dir,
)
from vcritic.errors import VcriticError

QUALITY = "DATA/MOS/mosz1.mat"
INDEX = "pic-index.xlsx"
MOS_RANGE = (0.0, 100.0)


def _index_names(root: Path, count: int) -> list[tuple[str | None, str]] | None:
    """(model, file name) per MOSz row from pic-index.xlsx, or None where the file is absent."""
    path = next((p for p in (root / INDEX, root / "DATA" / INDEX) if p.is_file()), None)
    if path is None:
        return None
    rows = read_xlsx_rows(path, "the AIGCIQA-2023 image index (model name, file name)")
    if len(rows) != count or any(len(row) < 2 for row in rows):
        raise VcriticError(
            f"{path} has {len(rows)} rows of (model name, file name), but {root / QUALITY} has {count} scores",
            hint="both files must come from the same AIGCIQA2023 release",
        )
    return [(str(row[0]).strip() if row[0] is not None else None, str(row[1]).strip()) for row in rows]


def _find(images: Path, candidates: list[str]) -> str:
    """The first candidate (relative to Image/) that exists; the first one if none does (reported at scoring)."""
    for candidate in candidates:
        if image_path(images, candidate).is_file():
            return candidate
    return candidates[0]


def load(root: Path) -> list[Record]:
    import numpy as np

    quality = np.asarray(load_mat_array(root / QUALITY, "MOSz", "the AIGCIQA-2023 quality MOSz"), dtype=float)
    quality = quality.ravel()
    images = require_dir(root / "Image", "the AIGCIQA-2023 images in Image/allimg/")
    index = _index_names(root, len(quality))
    records = []
    for i, mos in enumerate(quality):
        candidates = [f"allimg/{i}.png"]
        if index is not None:
            model, file = index[i]
            candidates = [f"allimg/{file}", *([f"{model}/{file}"] if model else []), f"allimg/{i}.png"]
        name = _find(images, candidates)
        score = parse_score(mos, root / QUALITY, f"entry {i + 1}", MOS_RANGE)
        records.append(Record(image_path(images, name), score, "aigciqa2023", name, ai_generated=True))
    return records


SPEC = DatasetSpec(
    name="aigciqa2023",
    title="AIGCIQA-2023",
    load=load,
    markers=(QUALITY,),
    folders=("aigciqa-2023", "aigciqa"),
    aliases=("aigciqa", "aigciqa-2023"),
    mos_range=MOS_RANGE,
    mos_source="DATA/MOS/mosz1.mat: MOSz (quality, z-scores rescaled to 0-100)",
    ai_generated=True,
    url="https://github.com/wangjiarui153/AIGCIQA2023",
)

"""LIVE In the Wild Image Quality Challenge (LIVEC, Ghadiyaram & Bovik 2016): 1,162 photos, MOS on 0-100.

Layout as distributed (``ChallengeDB_release``)::

    livec/
      Data/AllImages_release.mat   variable AllImages_release: image names (a 1169x1 cell array)
      Data/AllMOS_release.mat      variable AllMOS_release: MOS (1x1169, 0-100)
      Images/                      the images; trainingImages/t1.bmp ... t7.bmp

The first seven entries (t1-t7) are the study's training images, not part of the database; as everyone does,
they are dropped, leaving 1,162 images.
"""

from __future__ import annotations

import re
from pathlib import Path

from vcritic.datasets.records import DatasetSpec, Record, image_path, load_mat_array, parse_score, require_dir
from vcritic.errors import VcriticError

NAMES = "Data/AllImages_release.mat"
MOS = "Data/AllMOS_release.mat"
MOS_RANGE = (0.0, 100.0)
TRAINING_IMAGE = re.compile(r"^t[1-7]\.bmp$", re.IGNORECASE)


def _cell_strings(array) -> list[str]:
    """A MATLAB cell array of strings, as scipy loads it (nested object arrays), as a flat list."""
    import numpy as np

    names = []
    for cell in np.asarray(array, dtype=object).ravel():
        value = np.asarray(cell).ravel()
        names.append(str(value[0]) if value.size else "")
    return names


def load(root: Path) -> list[Record]:
    import numpy as np

    names = _cell_strings(load_mat_array(root / NAMES, "AllImages_release", "the LIVEC image names"))
    mos = np.asarray(load_mat_array(root / MOS, "AllMOS_release", "the LIVEC MOS"), dtype=float).ravel()
    if len(names) != len(mos):
        raise VcriticError(
            f"{root / NAMES} lists {len(names)} images but {root / MOS} has {len(mos)} scores",
            hint="both files must come from the same ChallengeDB_release",
        )
    images = require_dir(root / "Images", "the LIVEC images in Images/")
    return [
        Record(
            image_path(images, name),
            parse_score(score, root / MOS, f"entry {k + 1}", MOS_RANGE),
            "livec",
            name,
            ai_generated=False,
        )  # fmt: skip
        for k, (name, score) in enumerate(zip(names, mos, strict=True))
        if not TRAINING_IMAGE.match(name)
    ]


SPEC = DatasetSpec(
    name="livec",
    title="LIVEC",
    load=load,
    markers=(MOS,),
    folders=("ChallengeDB_release", "live-challenge", "clive"),
    aliases=("clive", "live-challenge", "live-itw", "challengedb"),
    mos_range=MOS_RANGE,
    mos_source="Data/AllMOS_release.mat: AllMOS_release (0-100)",
    url="https://live.ece.utexas.edu/research/ChallengeDB/index.html",
)

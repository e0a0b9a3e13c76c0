"""A folder with a file name that is not valid UTF-8 (legal on Linux), for the tests of such names."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

LINUX_ONLY = pytest.mark.skipif(sys.platform != "linux", reason="names that are not UTF-8 are a Linux file system's")


def write_images(folder: Path, sample_images) -> Path:
    """``folder`` with two real images: ``ok.png`` and ``a\\xff.png``, whose name is not valid UTF-8."""
    folder.mkdir()
    sample_images["chelsea"].resize((64, 48)).save(folder / "ok.png")
    # format named: Pillow 10 cannot tell it from a bytes name's extension
    sample_images["coffee"].resize((64, 48)).save(os.fsencode(folder) + b"/a\xff.png", format="PNG")
    return folder

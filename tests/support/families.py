"""Model-family parameters for tests: each supported family, those needing torchvision skipped where it is absent."""

from __future__ import annotations

import importlib.util

import pytest

from vcritic.testing import FAMILIES, NEEDS_TORCHVISION

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def family_params(families=FAMILIES):
    """Parametrize over model families; those needing torchvision are skipped where it is not installed."""
    marks = {
        fam: [
            pytest.mark.needs_torchvision,
            pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision"),
        ]
        for fam in NEEDS_TORCHVISION
    }
    return [pytest.param(fam, marks=marks.get(fam, []), id=fam) for fam in families]

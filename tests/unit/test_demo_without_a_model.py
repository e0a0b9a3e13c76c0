"""``vcritic demo`` without building a model: an earlier demo is kept, and the sample images need no scikit-image."""

from __future__ import annotations

import sys

from PIL import Image

from vcritic.cli.app import main
from vcritic.cli.demo import write_images


def test_demo_refuses_an_earlier_demo_without_overwrite(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.txt").write_text("keep")
    assert main(["demo", str(tmp_path)]) == 1
    assert "model already exists" in capsys.readouterr().err
    assert (tmp_path / "model" / "mine.txt").read_text() == "keep"
    assert not (tmp_path / "images").exists()


def test_sample_images_without_scikit_image(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # as if scikit-image (a test extra) were not installed
    names = write_images(tmp_path)
    assert names[:2] == ["sunset.png", "sunset-blurred.png"] and len(names) == 7
    pristine, blurred = (Image.open(tmp_path / name) for name in names[:2])
    assert pristine.size == blurred.size == (256, 256) and pristine.mode == "RGB"
    assert pristine.tobytes() != blurred.tobytes()

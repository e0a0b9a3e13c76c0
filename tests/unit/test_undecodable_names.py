"""A file name that is not valid UTF-8 (legal on Linux): its cell text, and ``report`` and ``bench --predictions``
find the image it stands for (scoring it and ``--resume`` on a tiny model: tests/e2e/test_undecodable_names_cli.py).

Such a name is written with each byte that is not UTF-8 as ``\\xNN`` (the CSV stays valid UTF-8): ``a\\xff.png``."""

from __future__ import annotations

import os

import pytest
from support.undecodable_names import LINUX_ONLY, write_images

from vcritic.base.csvio import cell_text
from vcritic.cli._csv import path_names

pytestmark = LINUX_ONLY

BAD = os.fsdecode(b"a\xff.png")  # 'a\udcff.png': how Python spells the name it cannot decode


@pytest.fixture
def images(tmp_path, sample_images):
    return write_images(tmp_path / "x", sample_images)


def test_cell_text_escapes_only_what_is_not_utf8():
    assert cell_text("plain/é.png") == "plain/é.png"
    assert cell_text(BAD) == "a\\xff.png"
    assert cell_text(cell_text(BAD)) == "a\\xff.png"
    # The written name and the name on disk are one image for --resume.
    assert ("as written", "a\\xff.png") in path_names(BAD) and ("as written", "a\\xff.png") in path_names("a\\xff.png")


def test_report_finds_the_image_an_escaped_name_stands_for(images, tmp_path):
    from vcritic.report import build_report

    scores = tmp_path / "scores.csv"
    rows = [f"{cell_text(str(images / name))},50.0000,1.0000,0-100," for name in (BAD, "ok.png")]
    scores.write_text("path,mos,mos_std,scale,error\n" + "\n".join(rows) + "\n", encoding="utf-8")
    page = build_report(scores)
    assert page.count('<img src="data:image/jpeg') == 2 and "a\\xff.png" in page


def test_bench_predictions_match_the_record_an_escaped_name_stands_for(images, tmp_path):
    from vcritic.datasets import Record
    from vcritic.evaluation.bench import read_predictions

    predictions = tmp_path / "p.csv"
    predictions.write_text(f"path,mos,mos_std,scale,error\n{cell_text(str(images / BAD))},42.0,1.0,0-100,\n")
    record = Record(path=images / BAD, mos=50.0, dataset="mine", image="other-name.png")
    (row,) = read_predictions(predictions, [record])
    assert row is not None and row.mos == 42.0

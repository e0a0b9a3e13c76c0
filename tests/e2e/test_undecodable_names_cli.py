"""``vcritic score`` on a tiny model with a file name that is not valid UTF-8: a row like any other, to a file and to
stdout, and ``--resume`` knows it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
from support.processes import process_env
from support.undecodable_names import LINUX_ONLY, write_images

from vcritic.cli.app import main

pytestmark = LINUX_ONLY


@pytest.fixture
def images(tmp_path, sample_images):
    return write_images(tmp_path / "x", sample_images)


def _rows(path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:  # strict UTF-8: the file must stay valid
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_score_writes_a_row_for_an_undecodable_name_and_resume_recognises_it(images, tiny_llava, tmp_path, capsys,
                                                                            sample_images):  # fmt: skip
    out = tmp_path / "scores.csv"
    args = ["score", str(images), "-m", str(tiny_llava), "-o", str(out)]
    # Was: UnicodeEncodeError, no row at all, for every image of the run.
    assert main(args) == 0
    rows = _rows(out)
    assert sorted(os.path.basename(r["path"]) for r in rows) == ["a\\xff.png", "ok.png"]
    assert all(r["mos"] and not r["error"] for r in rows)
    sample_images["rocket"].resize((48, 64)).save(images / "new.png")
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert "2 row(s) already there, 1 image(s) to go" in capsys.readouterr().err
    assert sorted(os.path.basename(r["path"]) for r in _rows(out)) == ["a\\xff.png", "new.png", "ok.png"]


@pytest.mark.slow
def test_score_to_stdout_writes_the_row_too(images, tiny_llava):
    env = process_env()
    env.pop("PYTHONIOENCODING", None)
    result = subprocess.run([sys.executable, "-m", "vcritic", "score", str(images), "-m", str(tiny_llava), "-o", "-"],
                            capture_output=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    text = result.stdout.decode("utf-8")  # strict: valid UTF-8
    assert "a\\xff.png," in text and "ok.png," in text

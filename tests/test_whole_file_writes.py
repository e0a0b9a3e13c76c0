"""``write_atomically`` (report pages, calibration files) replaces only a regular file: never a FIFO, a device node
or a symlink to one. The FIFOs here are made in the test's own folder; no real device node is ever touched."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from vcritic.cli.app import main
from vcritic.errors import VcriticError
from vcritic.files import write_atomically


@pytest.fixture(params=["fifo", "symlink-to-fifo"])
def special(request, tmp_path):
    """A path that is, or leads to, something other than a regular file; and what it leads to."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    if request.param == "fifo":
        return fifo, fifo
    link = tmp_path / "link"
    os.symlink(fifo, link)
    return link, fifo


def _still_a_fifo(path) -> bool:
    return stat.S_ISFIFO(os.stat(path).st_mode)


def test_write_atomically_refuses_what_is_not_a_regular_file(special):
    path, fifo = special
    with pytest.raises(VcriticError, match="not a regular file") as err:
        write_atomically(path, b"data")
    assert "\n" not in err.value.message
    assert _still_a_fifo(fifo) and os.path.islink(path) == (path != fifo)
    assert sorted(p.name for p in fifo.parent.iterdir()) == sorted({"fifo", path.name})  # no temporary left


def test_write_atomically_writes_through_a_symlink_to_a_regular_file(tmp_path):
    target = tmp_path / "real.html"
    target.write_text("old")
    os.symlink(target, tmp_path / "link.html")
    write_atomically(tmp_path / "link.html", b"new")
    assert os.path.islink(tmp_path / "link.html") and target.read_text() == "new"


def test_report_and_calibrate_overwrite_refuse_a_fifo_before_any_work(special, tmp_path, capsys):
    path, fifo = special
    scores = tmp_path / "scores.csv"
    rng = np.random.default_rng(0)
    mos = rng.uniform(0, 100, 40)
    lines = ["path,mos,mos_std,scale,error,rating"] + [f"i{i}.png,{m:.3f},1,0-100,,{m / 10:.3f}" for i, m in
                                                       enumerate(mos)]  # fmt: skip
    scores.write_text("\n".join(lines) + "\n")
    # Both used to rename a temporary file over it (as root: a device node replaced by an HTML page).
    assert main(["report", str(scores), "-o", str(path), "--overwrite"]) == 1
    assert "not a regular file" in capsys.readouterr().err and _still_a_fifo(fifo)
    model = tmp_path / "m"
    model.mkdir()
    args = ["calibrate", "-p", str(scores), "--target", "rating", "--target-range", "0-10", "-m", str(model)]
    assert main([*args, "-o", str(path), "--overwrite"]) == 1
    assert "not a regular file" in capsys.readouterr().err and _still_a_fifo(fifo)
    assert main([*args, "-o", str(tmp_path / "cal.json")]) == 0
    assert json.loads((tmp_path / "cal.json").read_text())["n"] == 40

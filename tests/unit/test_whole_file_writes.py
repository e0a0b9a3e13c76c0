"""``write_atomically`` (report pages, calibration files) replaces only a regular file: never a FIFO, a device node
or a symlink to one. The FIFOs here are made in the test's own folder; no real device node is ever touched."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from vcritic.base.files import (
    check_output_file,
    check_output_folder,
    leftover_temps,
    open_atomically,
    write_atomically,
    write_json_atomically,
)
from vcritic.cli.app import main
from vcritic.errors import VcriticError


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


def test_a_streamed_write_replaces_the_file_whole_or_not_at_all(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    with pytest.raises(KeyError), open_atomically(path, newline="") as handle:
        handle.write("half a new file")
        raise KeyError("stopped mid-write")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["rows.csv"]  # nothing half-written, no temp
    with open_atomically(path, newline="") as handle:
        handle.write("a,b\r\nnon-ASCII é\r\n")
    assert path.read_bytes() == "a,b\r\nnon-ASCII é\r\n".encode()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640 and os.listdir(tmp_path) == ["rows.csv"]
    write_json_atomically(path, {"é": 1}, ensure_ascii=False)
    assert path.read_text(encoding="utf-8") == '{\n  "é": 1\n}\n'


def test_a_failed_write_is_one_line_and_leaves_the_old_file(tmp_path):
    resource = pytest.importorskip("resource")  # POSIX; a file-size limit fails a write even for root
    path = tmp_path / "metrics.json"
    path.write_text("{}\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))  # Python ignores SIGXFSZ: the write gets EFBIG
    try:
        with pytest.raises(VcriticError, match="cannot write") as err:
            write_json_atomically(path, {"x": "y" * 5000})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "\n" not in err.value.message and err.value.hint == "the file is as it was"
    assert path.read_text() == "{}\n" and os.listdir(tmp_path) == ["metrics.json"]


def test_output_checks_name_the_problem_before_any_work(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("x\n")
    os.symlink(source, tmp_path / "link.csv")
    with pytest.raises(VcriticError, match="is one of the inputs"):
        check_output_file(tmp_path / "link.csv", example="-o out.csv", overwrite=True, inputs=[source])
    with pytest.raises(VcriticError, match=r"in.csv is not a folder"):
        check_output_file(source / "out.csv", example="-o out.csv", overwrite=True)
    with pytest.raises(VcriticError, match="does not exist") as err:
        check_output_file(tmp_path / "nowhere" / "out.csv", example="-o out.csv", overwrite=True)
    assert err.value.hint == "create it first, or choose another -o"
    with pytest.raises(VcriticError, match="already exists"):
        check_output_file(source, example="-o out.csv", overwrite=False)
    check_output_file(source, example="-o out.csv", overwrite=True)
    with pytest.raises(VcriticError, match="exists and is not a folder"):
        check_output_folder(source, hint="give a folder for --out")


def test_what_a_killed_write_left_is_known_as_vcritics(tmp_path):
    from vcritic.data.datadir import written_before

    (tmp_path / "data.json").write_text("{}")
    left = tmp_path / ".dialogues.jsonl.k3x9_q.vcritic-new"  # as open_atomically names its new file
    left.write_text('{"half": ')
    (tmp_path / ".notes.txt.k3x9_q.vcritic-new").write_text("not a file vcritic data writes")
    assert leftover_temps(tmp_path, ["dialogues.jsonl", "data.json"]) == [left]
    assert written_before(tmp_path) == {tmp_path.resolve() / "data.json", tmp_path.resolve() / left.name}

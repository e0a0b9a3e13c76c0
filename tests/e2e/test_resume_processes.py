"""--overwrite and --resume against a real process: Ctrl-C while the model loads, the lock after the file was replaced,
kill -9 while resuming, a full disk at the first row. The CLI runs in a subprocess, with timeouts."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from support.cli_output import read_csv
from support.processes import read_rows, run_vcritic, vcritic_process, wait_for_rows

HEADER = "path,mos,mos_std,scale,error\n"
OLD = HEADER + "old/earlier.png,50.0000,1.0000,0-100,\n"


def only_file_in(folder: Path, name: str) -> bool:
    """No temporary file left beside the output."""
    return sorted(p.name for p in folder.iterdir() if p.is_file()) == [name]


def wait_until_open(process, path: Path, timeout: float = 60) -> None:
    """Until ``process`` has ``path`` open (Linux: /proc/PID/fd)."""
    fds = Path(f"/proc/{process.pid}/fd")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if any(os.readlink(fd) == str(path) for fd in fds.iterdir()):
                return
        except OSError:  # an fd closed while we looked
            pass
        time.sleep(0.002)


def wait_until(condition, process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None and not condition():
        time.sleep(0.005)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="watches /proc/PID/fd")
def test_ctrl_c_while_the_model_loads_leaves_an_overwritten_file_as_it_was(image_dir, tiny_llava, tmp_path):
    out = tmp_path / "scores.csv"
    out.write_text(OLD)
    process = vcritic_process(["score", image_dir, "-m", tiny_llava, "-o", out, "--overwrite", "--workers", "0"])
    wait_until_open(process, out)  # the output is open and locked: the model loads next
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"Interrupted before the first row was written: {out} is as it was." in err
    assert out.read_text() == OLD
    assert only_file_in(tmp_path, "scores.csv")


def _copies(image: Path, folder: Path, n: int) -> Path:
    """``folder`` with ``n`` copies of ``image``: img00.png, img01.png..."""
    folder.mkdir()
    for i in range(n):
        (folder / f"img{i:02d}.png").write_bytes(image.read_bytes())
    return folder


@pytest.mark.slow
def test_the_lock_holds_after_overwrite_replaced_the_file(image_dir, tiny_llava, tmp_path):
    many = _copies(image_dir / "astronaut.png", tmp_path / "many", 8)
    out = tmp_path / "scores.csv"
    out.write_text(OLD)  # two lines: a third means the new file is in place
    first = vcritic_process(["score", many, "-m", tiny_llava, "-o", out, "--overwrite", "-b", "1", "--workers", "0"])
    wait_for_rows(out, 2, first)
    first.send_signal(signal.SIGSTOP)  # holds its lock, paused: the first run is surely still going
    try:
        for flags in (["--resume"], ["--overwrite"]):
            second = run_vcritic(["score", many, "-m", tiny_llava, "-o", out, *flags])
            assert second.returncode == 1
            assert "being written by another vcritic run" in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
    first.communicate(timeout=120)
    assert first.returncode == 0
    assert sorted(Path(row["path"]).name for row in read_rows(out)) == sorted(p.name for p in many.iterdir())


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="watches /proc/PID/fd")
def test_kill_9_while_resuming_error_rows_loses_no_row(image_dir, tiny_llava, tmp_path):
    many = _copies(image_dir / "astronaut.png", tmp_path / "many", 30)
    out = tmp_path / "scores.csv"
    good = "".join(f"{many / f'img{i:02d}.png'},{i}.0000,1.0000,0-100,\n" for i in range(10))
    errors = "".join(f"{many / f'img{i:02d}.png'},,,0-100,cannot read the image\n" for i in range(10, 20))
    start = HEADER + good + errors  # 10 scored, 10 failed, 10 never reached
    out.write_text(start)
    args = ["score", many, "-m", tiny_llava, "-o", out, "-b", "2", "--workers", "0", "--resume"]

    process = vcritic_process(args)  # killed while the model loads: nothing changed yet
    wait_until_open(process, out)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert out.read_text() == start

    def scored() -> int:
        return sum(1 for row in read_csv(out.read_text()) if row["mos"])

    for target in (13, 20):  # killed after the rewrite, with some images scored again
        process = vcritic_process(args)
        wait_until(lambda: scored() >= target, process)  # noqa: B023
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        rows = read_rows(out)
        assert out.read_text().startswith(HEADER + good)  # the scored rows stay, first, as they were
        assert len({row["path"] for row in rows}) == len(rows) >= target
    final = run_vcritic(args)
    assert final.returncode == 0, final.stderr
    rows = read_rows(out)
    assert sorted(Path(row["path"]).name for row in rows) == sorted(p.name for p in many.iterdir())
    assert not any(row["error"] for row in rows)
    assert out.read_text().startswith(HEADER + good)
    assert only_file_in(tmp_path, "scores.csv")


@pytest.mark.slow
def test_a_full_disk_at_the_first_row_of_overwrite_leaves_the_old_file(image_dir, tiny_llava, tmp_path):
    import resource

    out = tmp_path / "scores.csv"
    out.write_text(OLD)

    def tiny_disk():  # no file may grow past 40 bytes: the new file cannot take header and first row
        resource.setrlimit(resource.RLIMIT_FSIZE, (40, 40))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    result = run_vcritic(["score", image_dir, "-m", tiny_llava, "-o", out, "--overwrite"], preexec_fn=tiny_disk)
    assert result.returncode == 1
    assert f"cannot write {out}: the file is too large for this file system or limit; the file is as it was" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert out.read_text() == OLD
    assert only_file_in(tmp_path, "scores.csv")

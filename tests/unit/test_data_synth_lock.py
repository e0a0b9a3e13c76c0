"""``vcritic data synth`` takes an output folder's lock: refused while another process holds it, then runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vcritic.cli.app import main

HOLD = """
import sys, time
from pathlib import Path
from vcritic.base.files import locked_folder
with locked_folder(Path(sys.argv[1]), flag="--out"):
    print("locked", flush=True)
    time.sleep(60)
"""


def _holding(out: Path) -> subprocess.Popen:
    """Another process, holding ``out`` the way a vcritic run in progress does."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_data_synth_takes_the_same_lock(tmp_path, sample_images, capsys):
    src = tmp_path / "src"
    src.mkdir()
    sample_images["chelsea"].save(src / "a.png")
    out = tmp_path / "synth"
    holder = _holding(out)
    try:
        assert main(["data", "synth", str(src), "--out", str(out), "--size", "16", "--levels", "2"]) == 1
        assert f"is in use by another vcritic run (pid {holder.pid})" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert main(["data", "synth", str(src), "--out", str(out), "--size", "16", "--levels", "2"]) == 0

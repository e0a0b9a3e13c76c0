"""An output folder belongs to one vcritic run at a time: a second ``data build`` or ``synth`` into it is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.dataset_fixtures import build_all

HOLD = """
import sys, time
from pathlib import Path
from vcritic.base.files import locked_folder
with locked_folder(Path(sys.argv[1]), flag="--out"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("iqa")
    build_all(folder)
    return folder


def _holding(out: Path) -> subprocess.Popen:
    """Another process, holding ``out`` the way a vcritic run in progress does."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def _build(root: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "vcritic", "data", "build", "--stage", "1", "--root", str(root), "--out", str(out)]
    return subprocess.run([*command, *flags], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_second_data_build_into_the_same_folder_is_refused_naming_the_other_run(tmp_path, root):
    out = tmp_path / "data"
    holder = _holding(out)
    try:
        for flags in ((), ("--overwrite",)):
            # Both runs used to exit 0, one's dialogues.jsonl beside the other's data.json (or an emptied folder).
            second = _build(root, out, *flags)
            assert second.returncode == 1, second.stderr
            assert f"{out} is in use by another vcritic run (pid {holder.pid})" in second.stderr
            assert "Traceback" not in second.stderr
            assert not any(out.iterdir())
    finally:
        holder.kill()
        holder.wait()
    first = _build(root, out)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["data.json", "dialogues.jsonl", "val.jsonl"]
    assert _build(root, out, "--overwrite").returncode == 0  # the lock went with the run that held it

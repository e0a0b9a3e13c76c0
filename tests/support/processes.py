"""The CLI as a real process (``python -m vcritic`` with this checkout on PYTHONPATH), with timeouts so a hang fails
the test instead of blocking the suite; and a reader that checks a CSV vcritic wrote is whole."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vcritic.cli._csv import parse_whole_rows

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ["path", "mos", "mos_std", "scale", "error"]


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a launched vcritic: this one (read now: conftest isolates each test's vcritic home), with
    this checkout on PYTHONPATH, no bytecode written and no progress bars; ``extra`` added."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", "VCRITIC_NO_PROGRESS": "1", **extra}


def vcritic_process(args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vcritic", *map(str, args)],
        env=process_env(),
        stdout=kwargs.pop("stdout", subprocess.PIPE),
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def run_vcritic(args, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    process = vcritic_process(args, **kwargs)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"vcritic {' '.join(map(str, args))} hung for more than {timeout} s")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def read_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV vcritic wrote, checking it is whole: a header and only complete records."""
    data = path.read_bytes()
    records, end = parse_whole_rows(data)
    assert end == len(data), f"torn last line in {path}: {data[end:]!r}"
    assert records[0] == FIELDS
    return list(csv.DictReader(io.StringIO(data.decode())))


def wait_for_rows(path: Path, rows: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= rows + 1:
            return
        time.sleep(0.005)

"""benchmarks/describe.py runs end to end on a tiny model and finds the same text and numbers both ways."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from support.processes import process_env

ROOT = Path(__file__).resolve().parents[2]


def test_describe_benchmark_prints_both_ways_with_the_same_results():
    args = ["--hidden", "32", "--layers", "2", "--image-size", "32", "--images", "2", "--max-new-tokens", "3,5"]
    env = process_env()
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "describe.py"), *args, "--threads", "1"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+(\d+)/(\d+)\s+(\S+)$", out, re.MULTILINE)
    assert [row[0] for row in rows] == ["3", "5"], out
    for _, before, after, ratio, same, total, drift in rows:
        assert float(before) > 0 and float(after) > 0 and float(ratio) > 0
        assert same == total == "2" and float(drift) <= 1e-4

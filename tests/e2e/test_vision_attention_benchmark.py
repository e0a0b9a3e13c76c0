"""benchmarks/vision_attention.py on CPU: both paths side by side on a shallow 7B-shaped tower."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "vision_attention.py"


@pytest.mark.slow
def test_prints_both_paths_side_by_side_with_equal_outputs():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--depth", "2", "--batch", "2", "--size", "224x224,280x196"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    setup, *rows = (json.loads(line) for line in result.stdout.splitlines())
    assert setup["depth"] == 2 and setup["full_attention_layers"] == [1]
    assert [(r["size"], r["batch"]) for r in rows] == [("224x224", 2), ("280x196", 2)]
    for row in rows:
        for path in ("stock_sdpa", "grouped"):
            assert row[path]["forward_s"] > 0 and row[path]["img_s"] == pytest.approx(2 / row[path]["forward_s"])
        assert row["max_abs_diff"] < 1e-4  # float32, same weights and inputs
        assert row["grouped"]["attention_calls"] < row["stock_sdpa"]["attention_calls"]
    # 224x224: 16x16 patches, four whole 8x8-patch windows per image; one call per length and layer when grouped.
    assert rows[0]["grouped"]["attention_calls"] == 2 and rows[0]["stock_sdpa"]["attention_calls"] == 2 * 4 + 2

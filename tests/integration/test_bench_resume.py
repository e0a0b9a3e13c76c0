"""``vcritic bench --resume`` on a tiny model: a cut predictions file is continued to the metrics of a full run."""

from __future__ import annotations

import csv
import json

import pytest

from vcritic.cli.app import app


def test_bench_resume_continues_predictions_and_matches_a_full_run(runner, data_root, tiny_llava, tmp_path):
    args = ["bench", "spaq", "--root", str(data_root), "-m", str(tiny_llava), "--split", "all", "--pairs", "0"]
    args += ["--workers", "0", "--json"]
    full = runner.invoke(app, [*args, "--out", str(tmp_path / "full")])
    assert full.exit_code == 0, full.output
    out = tmp_path / "cut"
    out.mkdir()
    lines = (tmp_path / "full" / "predictions.csv").read_text().splitlines(keepends=True)
    (out / "predictions.csv").write_text("".join(lines[:4]) + lines[4][:10])  # 3 rows and a torn one, as a kill leaves
    refused = runner.invoke(app, [*args, "--out", str(out)])
    assert refused.exit_code == 1 and "--resume" in str(refused.exception)
    resumed = runner.invoke(app, [*args, "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert sorted(r["path"] for r in rows) == sorted(line.split(",")[0] for line in lines[1:])
    resumed_mos = json.loads((out / "metrics.json").read_text())["mos"]
    full_mos = json.loads((tmp_path / "full" / "metrics.json").read_text())["mos"]
    for metric in ("srcc", "plcc", "krcc"):
        assert resumed_mos[metric] == pytest.approx(full_mos[metric], abs=1e-3)

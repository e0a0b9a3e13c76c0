"""``vcritic bench`` end to end on a tiny model: a set with attributes and authenticity, an AI-generated set, all."""

from __future__ import annotations

import csv
import json

import pytest

from vcritic.cli.app import app
from vcritic.datasets import ATTRIBUTES, DATASETS
from vcritic.evaluation import bench
from vcritic.pipeline.scoring import score_columns


def correlations(result):
    return {k: v for k, v in result["mos"].items() if k != "logistic"}


@pytest.mark.slow
def test_bench_end_to_end_with_a_tiny_model(runner, data_root, tiny_llava, tmp_path):
    out = tmp_path / "run"
    args = ["bench", "spaq", "--root", str(data_root), "-m", str(tiny_llava), "--split", "all", "--pairs", "8"]
    result = runner.invoke(app, [*args, "--out", str(out), "--plot", "--batch-size", "4", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "SPAQ: all split (paper, seed 2403), 12 of 12 images; MOS 0-100" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == metrics["n_scored"] == 12
    assert metrics["source"]["model"] == str(tiny_llava)
    assert -1 <= metrics["mos"]["srcc"] <= 1 and -1 <= metrics["mos"]["plcc"] <= 1
    ranking = metrics["pair_ranking"]
    assert ranking["n_pairs"] == ranking["n_direct"] == 8 and 0 <= ranking["direct"] <= 1
    # Table 4 from the model: every SPAQ attribute and authenticity (SPAQ images are photographs) are read out.
    for attribute in ATTRIBUTES:
        values = metrics["attributes"][attribute]
        assert values["available"] is True and values["n"] == 12 and -1 <= values["srcc"] <= 1
    assert metrics["authenticity"]["available"] is True and metrics["authenticity"]["n"] == 12
    assert 0 <= metrics["authenticity"]["accuracy"] <= 1
    assert "n/a" not in result.stdout and "sharpness SRCC/PLCC" in result.stdout
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 12 and all(0 <= float(row["mos"]) <= 100 and row["scale"] == "0-100" for row in rows)
    assert list(rows[0]) == [*score_columns(("mos", "attributes", "authenticity")), *bench.BENCH_FIELDS]
    assert all(0 <= float(row[a]) <= 100 for row in rows for a in ATTRIBUTES)
    assert all(0 <= float(row["p_ai_generated"]) <= 1 for row in rows)
    pairs = list(csv.DictReader((out / "pairs.csv").open()))
    assert len(pairs) == 8 and all(0 <= float(p["p_a_better"]) <= 1 for p in pairs)
    assert (out / "scatter.png").read_bytes()[:4] == b"\x89PNG"

    # The predictions it wrote give the same metrics without the model.
    again = runner.invoke(
        app, [*args[:4], "--split", "all", "--pairs", "8", "--predictions", str(out / "predictions.csv"), "--json"]
    )
    assert again.exit_code == 0, again.output
    replay = json.loads(again.stdout)
    assert correlations(replay) == pytest.approx(correlations(metrics), abs=1e-3)
    assert replay["pair_ranking"]["score_difference"] == pytest.approx(ranking["score_difference"])
    for attribute in ATTRIBUTES:
        assert replay["attributes"][attribute]["srcc"] == pytest.approx(metrics["attributes"][attribute]["srcc"])
    assert replay["authenticity"] == metrics["authenticity"]


@pytest.mark.slow
def test_bench_reads_authenticity_on_ai_generated_sets(runner, data_root, tiny_llava, tmp_path):
    args = ["bench", "aigciqa2023", "--root", str(data_root), "-m", str(tiny_llava), "--split", "all"]
    result = runner.invoke(app, [*args, "--pairs", "0", "--json", "--workers", "0", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["attributes"] is None  # AIGCIQA-2023 has no attribute labels: no attribute columns either
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert "brightness" not in rows[0] and all(0 <= float(row["p_ai_generated"]) <= 1 for row in rows)
    expected = sum(float(row["p_ai_generated"]) > 0.5 for row in rows) / len(rows)  # every image is AI-generated
    assert metrics["authenticity"] == {"available": True, "n": len(rows), "accuracy": pytest.approx(expected)}


@pytest.mark.slow
def test_bench_all_with_a_tiny_model(runner, data_root, tiny_llava, tmp_path):
    args = ["bench", "all", "--root", str(data_root), "-m", str(tiny_llava), "--limit", "4", "--split", "all"]
    result = runner.invoke(app, [*args, "--pairs", "3", "--json", "--workers", "0"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert list(summary["datasets"]) == list(DATASETS)
    assert all(d["n_scored"] == 4 and d["pair_ranking"]["n_direct"] == 3 for d in summary["datasets"].values())

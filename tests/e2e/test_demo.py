"""``vcritic demo``: a tiny model and sample images that the other commands then run on, offline."""

from __future__ import annotations

import csv
import io

import pytest
from typer.testing import CliRunner

from vcritic.cli.app import app


@pytest.mark.slow
def test_demo_builds_what_score_compare_and_report_run_on(tmp_path):
    runner = CliRunner()
    folder = tmp_path / "try"
    result = runner.invoke(app, ["demo", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "model" / "config.json").is_file() and (folder / "model" / "model.safetensors").is_file()
    images = sorted(p.name for p in (folder / "images").iterdir())
    assert len(images) == 7 and "astronaut-blurred.png" in images
    # The printed next steps name the folders just written.
    assert f"vcritic score {folder / 'images'} -m {folder / 'model'}" in result.stdout

    scored = runner.invoke(app, ["score", str(folder / "images"), "-m", str(folder / "model"), "--workers", "0"])
    assert scored.exit_code == 0, scored.output
    rows = list(csv.DictReader(io.StringIO(scored.stdout)))
    assert len(rows) == 7 and all(0 <= float(row["mos"]) <= 100 and not row["error"] for row in rows)

    pair = [str(folder / "images" / "astronaut.png"), str(folder / "images" / "astronaut-blurred.png")]
    compared = runner.invoke(app, ["compare", *pair, "-m", str(folder / "model")])
    assert compared.exit_code == 0 and "P(A better than B)" in compared.stdout, compared.output

    (folder / "scores.csv").write_text(scored.stdout)
    report = runner.invoke(app, ["report", str(folder / "scores.csv"), "-o", str(folder / "report.html")])
    assert report.exit_code == 0, report.output
    assert "astronaut-noisy.png" in (folder / "report.html").read_text()

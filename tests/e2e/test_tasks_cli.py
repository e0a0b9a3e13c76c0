"""``--tasks`` and ``describe`` through the command line on a tiny model: --tasks all equals the single-task runs, bench
reads its scores file, describe writes text and JSON."""

from __future__ import annotations

import json
import re

import pytest
from support.cli_output import read_csv
from support.dataset_fixtures import make_spaq

from vcritic.cli.app import app
from vcritic.datasets import ATTRIBUTES
from vcritic.pipeline.scoring import score_columns


@pytest.mark.slow
def test_score_tasks_all_equals_the_single_task_runs(runner, image_dir, tiny_llava):
    args = ["score", str(image_dir), "-m", str(tiny_llava), "--workers", "0"]
    every = runner.invoke(app, [*args, "--tasks", "all", "-b", "4"])
    assert every.exit_code == 0, every.output
    rows = read_csv(every.stdout)
    assert list(rows[0]) == score_columns(("mos", "attributes", "authenticity"))
    singles = {}
    for task in ("mos", "attributes", "authenticity"):
        result = runner.invoke(app, [*args, "--tasks", task, "-b", "1"])
        assert result.exit_code == 0, result.output
        singles[task] = read_csv(result.stdout)
        assert list(singles[task][0]) == score_columns((task,))
    for k, row in enumerate(rows):
        for task, single in singles.items():
            for column in score_columns((task,)):
                if column in ("path", "scale", "error"):
                    assert row[column] == single[k][column]
                else:
                    assert float(row[column]) == pytest.approx(float(single[k][column]), abs=2e-4), column
        assert all(0 <= float(row[a]) <= 100 for a in ATTRIBUTES) and 0 <= float(row["p_ai_generated"]) <= 1


@pytest.mark.slow
def test_bench_reads_a_tasks_all_scores_file(runner, tmp_path, tiny_llava):
    """score --tasks all writes what bench --predictions reads: Table 4 filled without re-running the model."""
    make_spaq(tmp_path / "spaq", n=10)
    scores = tmp_path / "scores.csv"
    result = runner.invoke(
        app, ["score", str(tmp_path / "spaq"), "-m", str(tiny_llava), "--tasks", "all", "-o", str(scores)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["bench", "spaq", "--root", str(tmp_path / "spaq"), "--split", "all", "--predictions", str(scores)]
    )
    assert result.exit_code == 0, result.output
    assert "n/a" not in result.stdout and "brightness SRCC/PLCC" in result.stdout
    assert "authenticity accuracy" in result.stdout


@pytest.mark.slow
def test_describe_cli_text_and_json(runner, image_dir, tiny_llava):
    files = [str(image_dir / "astronaut.png"), str(image_dir / "camera.png")]
    args = ["describe", *files, "-m", str(tiny_llava), "--max-new-tokens", "6"]
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0] == f"{files[0]}:" and re.match(
        r"MOS \d+\.\d/100  brightness .* P\(AI-generated\) 0\.\d\d$", lines[2]
    )
    first = runner.invoke(app, [*args, "--json", "--tasks", "mos"])
    again = runner.invoke(app, [*args, "--json", "--tasks", "mos"])
    assert first.exit_code == 0, first.output
    assert first.stdout == again.stdout  # greedy: same image, same text, same numbers
    objects = [json.loads(line) for line in first.stdout.splitlines()]
    assert [o["path"] for o in objects] == files
    assert set(objects[0]) == {"path", "text", "mos", "mos_std", "error"} and 0 <= objects[0]["mos"] <= 100
    assert lines[1].strip() == objects[0]["text"]  # the streamed text is the text

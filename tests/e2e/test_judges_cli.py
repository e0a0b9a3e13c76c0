"""``vcritic score`` with a judge's read-out on a tiny model: the untrained marker, and an error row for a reasoning
judge's answer without a rating."""

from __future__ import annotations

import csv
import io

import pytest


@pytest.mark.slow
def test_score_marks_tasks_a_judge_was_not_trained_for(tiny_llava, image_dir, capsys):
    from vcritic.cli.app import main

    code = main(["score", str(image_dir), "-m", str(tiny_llava), "--readout", "q-realign", "--tasks", "all",
                 "--device", "cpu"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out.out)))
    assert rows and all(row["untrained"] == "attributes,authenticity" for row in rows)
    assert "its attributes, authenticity are zero-shot guesses" in out.err
    # MOS alone from the same judge: nothing untrained, no column.
    assert main(["score", str(image_dir), "-m", str(tiny_llava), "--readout", "q-realign", "--device", "cpu"]) == 0
    assert "untrained" not in capsys.readouterr().out.splitlines()[0]


@pytest.mark.slow
def test_a_reasoning_judge_without_a_number_gets_an_error_row(tiny_llava, image_dir, capsys, monkeypatch):
    from vcritic.cli.app import main
    from vcritic.model.readout_specs import ReadoutSpec

    # An answer with no rating in it: the row says so instead of leaving a silent gap. (What a random model writes
    # depends on its weights and tokenizer, so the model generates for real and its answer is taken as ratingless.)
    texts = []

    def no_rating(self, text):
        texts.append(text)
        return None

    monkeypatch.setattr(ReadoutSpec, "parse_rating", no_rating)
    code = main(["score", str(sorted(image_dir.iterdir())[0]), "-m", str(tiny_llava), "--readout", "visualquality-r1",
                 "--device", "cpu"])  # fmt: skip
    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert texts, "the judge generated no text to parse"
    assert code == 1 and row["mos"] == "" and row["error"] == "the model's answer held no rating"

"""The benchmark pipeline and ``vcritic bench`` without a model: predictions CSVs, metrics, outputs (the runs on a tiny
model are in tests/e2e/test_bench_cli.py)."""

from __future__ import annotations

import csv
import json
import os

import pytest
from support.dataset_fixtures import make_spaq

from vcritic.cli.app import app, main
from vcritic.datasets import DATASETS
from vcritic.evaluation import bench
from vcritic.pipeline.scoring import ScoreRow, score_columns


def write_scores(path, rows):
    """A predictions file as ``vcritic score`` writes it."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "mos", "mos_std", "scale", "error"])
        writer.writerows(rows)
    return path


def perfect_scores(path, records, relative_to=None, error_for=()):
    rows = []
    for r in records:
        name = os.path.relpath(r.path, relative_to) if relative_to else str(r.path)
        failed = r.image in error_for
        rows.append(
            [name, "" if failed else f"{r.mos:.4f}", "" if failed else "10.0", "0-100", "boom" if failed else ""]
        )
    return write_scores(path, rows)


def correlations(result):
    return {k: v for k, v in result["mos"].items() if k != "logistic"}


def test_paper_numbers_are_the_papers():
    assert bench.PAPER_TABLE2["koniq10k"] == (0.856, 0.867)
    assert bench.PAPER_TABLE2["agiqa3k"] == (0.734, 0.712)
    assert bench.PAPER_PAIR_RANKING["flive"] == (0.76, 0.72)
    assert bench.PAPER_ATTRIBUTES["noisiness"] == (0.813, 0.807)
    assert bench.PAPER_AUTHENTICITY == 0.703
    assert set(bench.PAPER_TABLE2) == set(DATASETS) - {"aigciqa2023"}


def test_prepare_picks_the_split(data_root):
    test = bench.prepare("koniq10k", data_root)
    assert test.split == "test" and len(test.records) == round(12 * 0.2)
    assert len(bench.prepare("koniq10k", data_root, split="all").records) == 12
    official = bench.prepare("koniq10k", data_root, split="test", scheme="official")
    assert all(r.official_split == "test" for r in official.records)
    assert len(bench.prepare("kadid10k", data_root, split="train", limit=3).records) == 3


def test_read_predictions_matches_absolute_relative_and_by_image_name(data_root, tmp_path, monkeypatch):
    prepared = bench.prepare("spaq", data_root, split="all")
    records = prepared.records
    absolute = perfect_scores(tmp_path / "abs.csv", records)
    assert [p.mos for p in bench.read_predictions(absolute, records)] == pytest.approx([r.mos for r in records])

    relative_to_root = perfect_scores(tmp_path / "rel.csv", records, relative_to=data_root)
    assert all(p is not None for p in bench.read_predictions(relative_to_root, records, [data_root]))

    monkeypatch.chdir(data_root / "spaq")  # relative to where `vcritic score` ran
    relative_to_cwd = perfect_scores(tmp_path / "cwd.csv", records, relative_to=data_root / "spaq")
    assert all(p is not None for p in bench.read_predictions(relative_to_cwd, records))

    elsewhere = write_scores(
        tmp_path / "moved.csv", [[f"/mnt/other/TestImage/{r.image}", "50", "", "0-100", ""] for r in records]
    )
    assert all(p is not None and p.mos == 50 for p in bench.read_predictions(elsewhere, records))


def test_read_predictions_keeps_errors_and_gaps(data_root, tmp_path):
    records = bench.prepare("spaq", data_root, split="all").records
    path = perfect_scores(tmp_path / "p.csv", records[:-1], error_for={records[0].image})
    got = bench.read_predictions(path, records)
    assert got[0].mos is None and got[0].error == "boom"
    assert got[-1] is None
    assert got[1].mos == pytest.approx(records[1].mos) and got[1].mos_std == 10.0


def test_read_predictions_rejects_other_scales(data_root, tmp_path):
    from vcritic.errors import VcriticError

    records = bench.prepare("spaq", data_root, split="all").records
    path = write_scores(tmp_path / "p.csv", [[str(records[0].path), "0.5", "", "0-1", ""]])
    with pytest.raises(VcriticError, match="scale is not 0-100"):
        bench.read_predictions(path, records)


def test_evaluate_perfect_predictions(data_root):
    prepared = bench.prepare("kadid10k", data_root, split="all")
    predictions = [ScoreRow(str(r.path), r.mos, 1.0) for r in prepared.records]
    usable = [True] * len(predictions)
    pairs = bench.sample_pairs(prepared.records, usable, 30)
    result = bench.evaluate(prepared, predictions, pairs=pairs, pair_probs=[1.0] * len(pairs))
    assert result["mos"]["srcc"] == pytest.approx(1.0) and result["mos"]["plcc"] == pytest.approx(1.0)
    assert result["mos"]["krcc"] == pytest.approx(1.0) and result["mos"]["plcc_logistic"] == pytest.approx(
        1.0, abs=1e-4
    )
    assert result["pair_ranking"]["score_difference"] == 1.0
    # "direct" said the first is always better: right exactly where it is
    expected = sum(prepared.records[i].mos > prepared.records[j].mos for i, j in pairs) / len(pairs)
    assert result["pair_ranking"]["direct"] == pytest.approx(expected)
    assert result["n_images"] == result["n_scored"] == 20 and result["n_failed"] == result["n_missing"] == 0
    assert result["attributes"] is None
    assert result["authenticity"] == {"available": False, "note": bench.NO_AUTHENTICITY_READOUT}
    assert result["paper"]["srcc"] == 0.681
    json.dumps(result, allow_nan=False)  # JSON-ready: no NaN


def test_sample_pairs_same_dataset_no_ties_seeded(data_root):
    prepared = bench.prepare("flive", data_root, split="all")
    records = prepared.records
    pairs = bench.sample_pairs(records, [True] * len(records), 40)
    assert pairs == bench.sample_pairs(records, [True] * len(records), 40)
    assert len(pairs) == 40 and len({frozenset(p) for p in pairs}) == 40
    assert all(i != j and records[i].mos != records[j].mos for i, j in pairs)
    assert bench.sample_pairs(records, [True] * len(records), 500) != []  # capped at what exists (66 pairs)
    assert len(bench.sample_pairs(records, [True] * len(records), 500)) == 66
    assert bench.sample_pairs(records, [i < 1 for i in range(len(records))], 10) == []


def test_attributes_and_authenticity_when_predictions_have_them(tmp_path):
    make_spaq(tmp_path, n=10)
    prepared = bench.prepare("spaq", tmp_path, split="all")
    path = tmp_path / "p.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "mos", "mos_std", "scale", "error", "sharpness", "p_ai_generated"])
        for i, r in enumerate(prepared.records):
            writer.writerow([r.path, r.mos, 1, "0-100", "", r.attributes["sharpness"], 0.9 if i < 3 else 0.1])
    result = bench.evaluate(prepared, bench.read_predictions(path, prepared.records))
    assert result["attributes"]["sharpness"]["srcc"] == pytest.approx(1.0)
    assert result["attributes"]["brightness"] == {"available": False, "note": bench.NO_ATTRIBUTE_READOUT}
    assert result["authenticity"]["accuracy"] == pytest.approx(0.7)  # 3 of 10 photos called AI-generated


def test_outputs_round_trip_and_plot(data_root, tmp_path):
    prepared = bench.prepare("agiqa3k", data_root, split="all")
    predictions = [ScoreRow(str(r.path), 100 - r.mos, 2.0) for r in prepared.records]
    predictions[0] = ScoreRow(str(prepared.records[0].path), None, None, "file not found")
    result = bench.evaluate(prepared, predictions)
    csv_path = bench.write_predictions(tmp_path / "predictions.csv", prepared, predictions)
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == [*score_columns(), *bench.BENCH_FIELDS]
    assert rows[0]["error"] == "file not found" and rows[0]["mos"] == ""
    assert float(rows[1]["mos_true"]) == pytest.approx(prepared.records[1].mos, abs=1e-4)
    again = bench.evaluate(prepared, bench.read_predictions(csv_path, prepared.records))
    assert correlations(again) == pytest.approx(correlations(result), abs=1e-5)
    assert result["mos"]["srcc"] == pytest.approx(-1.0) and result["n_failed"] == 1
    png = bench.plot_scatter(tmp_path / "scatter.png", prepared, predictions, result)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- CLI ---------------------------------------------------------------------------------------------------------
def test_cli_predictions_json(runner, data_root, tmp_path):
    records = bench.prepare("koniq10k", data_root, split="all").records
    scores = perfect_scores(tmp_path / "scores.csv", records)
    args = ["bench", "koniq10k", "--root", str(data_root), "--predictions", str(scores), "--json", "--pairs", "5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["dataset"] == "koniq10k" and metrics["split"] == "test" and metrics["n_scored"] == 2
    assert metrics["source"] == {"model": None, "adapter": None, "predictions": str(scores)}
    assert metrics["pair_ranking"]["direct"] is None and metrics["scale"] == "0-100"


def test_cli_predictions_counts_identical_duplicates_once_and_refuses_conflicting_ones(data_root, tmp_path, capsys):
    records = bench.prepare("koniq10k", data_root, split="all").records
    scores = perfect_scores(tmp_path / "scores.csv", records)
    lines = scores.read_text().splitlines(keepends=True)
    args = ["bench", "koniq10k", "--root", str(data_root), "--split", "all", "--predictions", str(scores), "--json"]
    assert main(args) == 0
    alone = json.loads(capsys.readouterr().out)
    # the same images again, as ./relative paths from --root: the same values, so the same result and one note
    again = [f"./{os.path.relpath(r.path, data_root)},{r.mos:.4f},10.0,0-100,\n" for r in records[:3]]
    scores.write_text("".join([*lines, *again, lines[1]]))
    assert main(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["mos"] == alone["mos"]
    assert "scores.csv: 4 repeated row(s) (same image, same values) counted once" in captured.err
    # a different score for the second image: a usage error naming it, both lines and the fix
    clash = f"{records[1].path},{records[1].mos + 1:.4f},10.0,0-100,\n"
    scores.write_text("".join([*lines, clash]))
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    said = f"{records[1].path} appears on lines 3 and {len(lines) + 1} with different scores (mos {records[1].mos:.4g}"
    assert said in err and "Hint: keep one row per image" in err and "Traceback" not in err


def test_read_predictions_refuses_an_error_row_and_a_score_for_one_image(data_root, tmp_path):
    from vcritic.errors import UsageError

    records = bench.prepare("spaq", data_root, split="all").records
    path = perfect_scores(tmp_path / "p.csv", records)
    with path.open("a") as handle:
        handle.write(f"{records[0].path},,,0-100,boom\n")
    with pytest.raises(UsageError, match=r"with different scores \(mos [\d.]+ mos_std 10 and error 'boom'\)"):
        bench.read_predictions(path, records)


def test_cli_split_csv_names_the_reference_of_every_image_on_both_sides(runner, data_root, tmp_path):
    records = bench.prepare("kadid10k", data_root, split="all").records
    scores = perfect_scores(tmp_path / "scores.csv", records)
    out = tmp_path / "out"
    args = ["bench", "kadid10k", "--root", str(data_root), "--predictions", str(scores), "--pairs", "0", "--out"]
    assert runner.invoke(app, [*args, str(out)]).exit_code == 0
    with (out / "split.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["split"] for r in rows} == {"train", "test"} and len(rows) == len(records)
    # The train side's ref_id was left empty: only the evaluated (test) images were passed on.
    assert {r["image"]: r["ref_id"] for r in rows} == {r.image: r.ref_id for r in records}


def test_cli_all_with_predictions_prints_table2(runner, data_root, tmp_path):
    records = [r for name in ("spaq", "kadid10k") for r in bench.prepare(name, data_root, split="all").records]
    scores = perfect_scores(tmp_path / "scores.csv", records)
    out = tmp_path / "out"
    args = ["bench", "all", "--root", str(data_root), "--predictions", str(scores), "--split", "all", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "MOS, SRCC/PLCC (the paper's Table 2 layout)"
    paper_row = next(line for line in lines if "VisualCritic (paper)" in line)
    ours_row = next(line for line in lines if line.startswith("│ scores.csv"))
    assert "0.856/0.867" in paper_row and "0.681/0.701" in paper_row
    assert ours_row.split("│")[2].strip() == "-"  # KonIQ-10k: not in the predictions
    assert ours_row.split("│")[3].strip() == "1.000/1.000"  # SPAQ
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["datasets"]) == {"spaq", "kadid10k"}
    assert (out / "spaq" / "metrics.json").is_file() and (out / "kadid10k" / "split.csv").is_file()
    # The datasets without a row in scores.csv get no folder (once a header-only predictions.csv) and are named.
    without = [name for name in DATASETS if name not in ("spaq", "kadid10k")]
    assert sorted(path.name for path in out.iterdir()) == ["kadid10k", "spaq", "summary.json"]
    assert summary["without_predictions"] == without
    assert f"Not evaluated: {', '.join(without)} (no predictions in scores.csv)" in result.stderr


def test_cli_errors_are_one_line_messages(data_root, capsys, tmp_path):
    assert main(["bench", "konik", "--root", str(data_root)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Error: unknown dataset 'konik'"
    assert err[1].startswith("Hint: did you mean 'koniq10k'?")
    assert main(["bench", "spaq", "--root", str(tmp_path), "--predictions", str(tmp_path / "none.csv")]) == 1
    assert capsys.readouterr().err.startswith(f"Error: predictions file {tmp_path / 'none.csv'} not found")
    (tmp_path / "other.csv").write_text("path,mos\n/elsewhere/x.png,50\n")
    assert main(["bench", "spaq", "--root", str(data_root), "--predictions", str(tmp_path / "other.csv")]) == 1
    assert "none of the 2 SPAQ images (test split) is in" in capsys.readouterr().err
    assert main(["bench", "all", "--root", str(tmp_path), "--predictions", str(tmp_path / "other.csv")]) == 1
    assert "no dataset found under" in capsys.readouterr().err


def test_docs_and_help_name_every_dataset():
    from pathlib import Path

    from vcritic.cli.bench import EPILOG

    guide = (Path(__file__).parents[2] / "docs" / "guides" / "benchmarks.md").read_text()
    for name, spec in DATASETS.items():
        assert f"| `{name}/`" in guide and spec.url in guide, name
        assert name in EPILOG


def test_cli_manifest_with_mos_range(runner, data_root, tmp_path):
    records = bench.prepare("kadid10k", data_root, split="all").records
    manifest = tmp_path / "mine.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "mos", "ref_id"])
        for r in records:
            writer.writerow([os.path.relpath(r.path, tmp_path), 1 + r.mos / 25, r.ref_id])  # back to 1-5
    scores = perfect_scores(tmp_path / "scores.csv", records)
    args = ["bench", str(manifest), "--mos-range", "1-5", "--predictions", str(scores), "--json", "--pairs", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["dataset"] == "mine" and metrics["mos_source"] == "mine.csv: mos (1-5)"
    assert metrics["n_images"] == 4  # by reference: 1 of the 5 references (4 images) tests
    assert metrics["mos"]["plcc"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "expected"), [("1-5", (1.0, 5.0)), ("0,100", (0.0, 100.0)), ("-3:3", (-3.0, 3.0)), ("-1--0.5", (-1, -0.5))]
)
def test_mos_range_option(text, expected):
    from vcritic.cli._options import parse_range

    assert parse_range(text) == expected


def test_mos_range_option_rejects_nonsense():
    from vcritic.cli._options import parse_range
    from vcritic.errors import VcriticError

    for text in ("5-1", "abc", "1-2-3"):
        with pytest.raises(VcriticError):
            parse_range(text)


def test_bench_without_root_looks_in_vcritic_data_and_says_where(runner, data_root, monkeypatch, tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    monkeypatch.setenv("VCRITIC_DATA", str(empty))
    (tmp_path / "p.csv").write_text("path,mos\n")
    result = runner.invoke(app, ["bench", "konIQ", "--predictions", str(tmp_path / "p.csv")])
    assert result.exit_code == 1
    assert f"KonIQ-10k not found in {empty}" in str(result.exception) and "VCRITIC_DATA" in str(result.exception)
    monkeypatch.setenv("VCRITIC_DATA", str(data_root))
    listing = runner.invoke(app, ["bench", "--list"])
    assert listing.exit_code == 0
    assert str(data_root / "koniq10k") in listing.output and "spaq" in listing.output

"""``vcritic rank`` without a model: --from-pairs fits a ranking from a pairs file, and the errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.cli_output import read_csv
from support.ranking import check_ranked

from vcritic.cli.app import app, main


def write_pairs(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    path.write_text("a,b,p_a_better,better,error\n" + "".join(",".join(row) + "\n" for row in rows))
    return path


def test_from_pairs_needs_no_model_or_files(runner, tmp_path):
    # The images need not exist: the fit reads only the CSV. ./x.png and x.png are one image.
    source = write_pairs(
        tmp_path / "pairs.csv",
        [("x.png", "y.png", "0.9", "a", ""), ("./y.png", "z.png", "0.8", "a", ""), ("x.png", "z.png", "0.95", "a", ""),
         ("z.png", "gone.png", "", "", "file not found"), ("x.png", "x.png", "0.5", "tie", ""),
         ("w.png", "w.png", "0.5", "tie", "")],
    )  # fmt: skip
    out = tmp_path / "ranking.csv"
    result = runner.invoke(app, ["rank", "--from-pairs", str(source), "-o", str(out), "--show", "0"])
    assert result.exit_code == 3, result.output
    rows = read_csv(out.read_text())
    ranked = check_ranked(rows)
    folder = str(tmp_path)
    assert [row["path"] for row in ranked] == [os.path.join(folder, name) for name in ("x.png", "y.png", "z.png")]
    assert [row["comparisons"] for row in ranked] == ["2", "2", "2"]  # the self-pair counts for nothing
    assert rows[-2] == {"rank": "", "path": os.path.join(folder, "gone.png"), "strength": "", "se": "",
                        "comparisons": "0", "win_rate": "", "error": "not compared: file not found"}  # fmt: skip
    assert rows[-1]["path"] == os.path.join(folder, "w.png") and rows[-1]["error"] == "compared only with itself"
    assert "Ranked 3 images from 3 comparisons" in result.output


def test_from_pairs_refuses_disconnected_comparisons_and_leaves_no_file(capsys, tmp_path):
    source = write_pairs(
        tmp_path / "pairs.csv", [("a.png", "b.png", "0.6", "a", ""), ("c.png", "d.png", "0.3", "b", "")]
    )
    out = tmp_path / "ranking.csv"
    assert main(["rank", "--from-pairs", str(source), "-o", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("Error: the comparisons split the images into 2 groups")
    assert "c.png" in err[0] and "d.png" in err[0] and err[1].startswith("Hint: compare across the groups")
    assert not out.exists()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("a,b\nx.png,y.png\n", "has no column p_a_better (columns: a, b)"),
        ("a,b,p_a_better\nx.png,y.png,1.7\n", "comparison 1 has p_a_better '1.7', not a probability in 0-1"),
        ("a,b,p_a_better\nx.png,y.png,high\n", "comparison 1 has p_a_better 'high'"),
        ("a,b,p_a_better,error\nx.png,y.png,,file not found\n", "has no usable comparison of two different images"),
    ],
)
def test_bad_pairs_files_are_one_line_errors(capsys, tmp_path, rows, message):
    source = tmp_path / "pairs.csv"
    source.write_text(rows)
    assert main(["rank", "--from-pairs", str(source)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert message in err[0] and len(err) <= 2


@pytest.mark.parametrize(
    "args",
    [
        ["rank", "{one}"],
        ["rank", "{one}", "--from-pairs", "p.csv"],
        ["rank", "{dir}", "--per-image", "4", "--all-pairs"],
        ["rank", "{dir}", "--resume"],
        ["rank", "{dir}", "--per-image", "1"],
        ["rank", "--from-pairs", "p.csv", "--pairs-out", "q.csv"],
        ["rank", "--from-pairs", "p.csv", "--all-pairs"],
    ],
)
def test_usage_errors_exit_2(image_dir, args, capsys):
    paths = {"one": str(image_dir / "astronaut.png"), "dir": str(image_dir)}
    code = main([arg.format(**paths) for arg in args])
    assert code == 2, capsys.readouterr().err


def test_one_image_is_a_usage_error_naming_it(capsys, image_dir):
    one = image_dir / "astronaut.png"
    assert main(["rank", str(one), "-m", "no/such-model"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"Error: ranking needs at least 2 images, found 1 ({one})",
        "Hint: give more images",
    ]

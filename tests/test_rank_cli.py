"""``vcritic rank``: a tiny real model end to end, --from-pairs without a model, and the errors."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vcritic.cli.app import app, main

COLUMNS = ["rank", "path", "strength", "se", "comparisons", "win_rate", "error"]


@pytest.fixture
def runner():
    return CliRunner()


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def check_ranked(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The ranked rows, checked for what every ranking CSV promises: ranks 1..n best first, sane numbers."""
    ranked = [row for row in rows if not row["error"]]
    assert list(rows[0]) == COLUMNS
    assert [int(row["rank"]) for row in ranked] == list(range(1, len(ranked) + 1))
    strengths = [float(row["strength"]) for row in ranked]
    assert strengths == sorted(strengths, reverse=True)
    assert abs(sum(strengths)) < 1e-3  # centred (4 decimals written)
    assert all(float(row["se"]) > 0 and 0 <= float(row["win_rate"]) <= 1 for row in ranked)
    assert rows[len(ranked) :] == [row for row in rows if row["error"]]  # error rows last
    return ranked


@pytest.mark.slow
def test_rank_folder_end_to_end_then_refit_and_python_api(runner, image_dir, tiny_llava, tmp_path, monkeypatch):
    (image_dir / "broken.jpg").write_bytes(b"plain text, not a picture")
    monkeypatch.chdir(tmp_path)
    out, pairs = tmp_path / "ranking.csv", tmp_path / "pairs" / "pairs.csv"
    pairs.parent.mkdir()
    args = ["rank", "images", "-m", str(tiny_llava), "-k", "2", "-o", str(out), "--pairs-out", str(pairs)]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output  # ranked, but one image has an error
    rows = read_csv(out.read_text())
    ranked = check_ranked(rows)
    assert len(ranked) == 6 and len(rows) == 7
    assert rows[-1]["path"] == os.path.join("images", "broken.jpg") and rows[-1]["rank"] == ""
    assert rows[-1]["error"] == "not an image, or a format Pillow cannot read"
    assert all(int(row["comparisons"]) >= 2 for row in ranked)
    assert "Ranked 6 of 7 images from" in result.output and "Ranking (best first)" in result.output

    compared = read_csv(pairs.read_text())
    assert list(compared[0]) == ["a", "b", "p_a_better", "better", "error"]
    # Cells are relative to the pairs file's folder, as compare --pairs reads them.
    assert all((pairs.parent / row["a"]).is_file() and (pairs.parent / row["b"]).is_file() for row in compared)
    assert len({frozenset((row["a"], row["b"])) for row in compared}) == len(compared)
    assert sum(int(row["comparisons"]) for row in ranked) == 2 * len(compared)

    # The saved comparisons fit to the same ranking with no model at all (this --model does not exist).
    refit = runner.invoke(app, ["rank", "--from-pairs", "pairs/pairs.csv", "-m", "no/such-model", "--show", "0"])
    assert refit.exit_code == 0, refit.output
    again = check_ranked(read_csv(refit.stdout))
    assert [row["path"] for row in again] == [row["path"] for row in ranked]
    for first, second in zip(again, ranked, strict=True):
        assert float(first["strength"]) == pytest.approx(float(second["strength"]), abs=1.5e-4)

    # The Python API picks the same design for the same images and seed, so it gives the same ranking.
    from vcritic import load_critic

    readable = [row["path"] for row in rows if not row["error"]]
    ordered = sorted(readable)  # the folder walk's order, which fixed the CLI's design
    ranking = load_critic(str(tiny_llava)).rank(ordered, per_image=2, seed=0)
    assert [image.path for image in ranking.images] == [row["path"] for row in ranked]
    assert [image.rank for image in ranking.images] == list(range(1, 7))
    for image, row in zip(ranking.images, ranked, strict=True):
        assert image.strength == pytest.approx(float(row["strength"]), abs=1e-3)
        assert image.comparisons == int(row["comparisons"])
    assert len(ranking.pairs) == len(compared)


@pytest.mark.slow
def test_from_pairs_fits_what_compare_pairs_wrote(runner, image_dir, tiny_llava, tmp_path):
    names = sorted(path.name for path in image_dir.iterdir())
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "id,a,b\n"
        + "".join(
            f"{n},images/{x},images/{y}\n" for n, (x, y) in enumerate((x, y) for x in names for y in names if x < y)
        )
    )
    compared = tmp_path / "compared.csv"
    result = runner.invoke(app, ["compare", "--pairs", str(pairs), "-o", str(compared), "-m", str(tiny_llava)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["rank", "--from-pairs", str(compared), "-m", "no/such-model", "-o", "-"])
    assert result.exit_code == 0, result.output
    ranked = check_ranked(read_csv(result.stdout))
    assert sorted(Path(row["path"]).name for row in ranked) == names
    assert all(row["comparisons"] == str(len(names) - 1) for row in ranked)  # every pair
    # win_rate is each image's mean P(better) over the rows compare wrote.
    rows = read_csv(compared.read_text())
    for row in ranked:
        name = Path(row["path"]).name
        wins = [float(r["p_a_better"]) for r in rows if r["a"].endswith(name)]
        wins += [1 - float(r["p_a_better"]) for r in rows if r["b"].endswith(name)]
        assert float(row["win_rate"]) == pytest.approx(sum(wins) / len(wins), abs=2e-4)


@pytest.mark.slow
def test_resume_continues_a_cut_pairs_file(runner, image_dir, tiny_llava, tmp_path):
    pairs, out = tmp_path / "pairs.csv", tmp_path / "ranking.csv"
    args = ["rank", str(image_dir), "-m", str(tiny_llava), "-k", "2", "--pairs-out", str(pairs), "-o", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    whole, first = pairs.read_text(), out.read_text()
    lines = whole.splitlines(keepends=True)
    pairs.write_text("".join(lines[:4]) + lines[4][:10])  # three comparisons and a torn line, as a killed run leaves
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "3 of 6 comparisons already there" in resumed.output  # 6 images, K = 2: a cycle through them
    assert sorted(pairs.read_text().splitlines()) == sorted(whole.splitlines())
    resumed_rows = read_csv(out.read_text())
    assert [row["path"] for row in resumed_rows] == [row["path"] for row in read_csv(first)]
    for row, before in zip(resumed_rows, read_csv(first), strict=True):  # kept rows hold P to 6 decimals
        assert float(row["strength"]) == pytest.approx(float(before["strength"]), abs=1.5e-4)


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


@pytest.mark.slow
def test_python_rank_of_pil_images_is_fitted_from_the_critics_own_comparisons(tiny_llava, sample_images):
    from vcritic import Ranking, VcriticError, load_critic

    critic = load_critic(str(tiny_llava))
    pictures = [sample_images[name] for name in ("astronaut", "coffee", "camera", "rocket")]
    ranking = critic.rank(pictures)
    assert isinstance(ranking, Ranking)
    assert sorted(ranking.order) == [0, 1, 2, 3] and all(image.path is None for image in ranking.images)
    assert len(ranking.pairs) == 6  # four images: every pair
    for a, b, p in ranking.pairs:
        assert p == pytest.approx(critic.compare(pictures[a], pictures[b]).p_a_better, abs=1e-6)
    # win_rate is the mean P(better) over the image's own comparisons
    best = ranking.images[0]
    wins = [p if a == best.index else 1 - p for a, b, p in ranking.pairs if best.index in (a, b)]
    assert best.win_rate == pytest.approx(sum(wins) / 3) and best.comparisons == 3
    with pytest.raises(VcriticError, match="at least 2 images"):
        critic.rank([pictures[0]])

"""``vcritic rank`` end to end on a tiny real model (without a model: tests/unit/test_rank_cli_without_a_model.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.cli_output import read_csv
from support.ranking import check_ranked

from vcritic.cli.app import app


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

"""--overwrite keeps the old file until the first new row; --resume scores error rows again and matches an input by
its path as written or as the same file. The CLI on the tiny random LLaVA (CliRunner); the tests that need a real
process (SIGINT, SIGKILL, a second writer) are in tests/e2e/test_resume_processes.py.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

from support.cli_output import read_csv
from support.dataset_fixtures import make_spaq
from support.processes import read_rows

from vcritic.cli._csv import open_output
from vcritic.cli.app import app

HEADER = "path,mos,mos_std,scale,error\n"
OLD = HEADER + "old/earlier.png,50.0000,1.0000,0-100,\n"


def spoil(text: str, names: set[str]) -> str:
    """The CSV with the rows of ``names`` turned into error rows, as a run that could not read them writes them."""
    rows = read_csv(text)
    for row in rows:
        if Path(row["path"]).name in names:
            row.update(mos="", mos_std="", error="cannot read the image: truncated file")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def only_file_in(folder: Path, name: str) -> bool:
    """No temporary file left beside the output."""
    return sorted(p.name for p in folder.iterdir() if p.is_file()) == [name]


# -- --overwrite -------------------------------------------------------------------------------------------------
def test_overwrite_keeps_the_old_file_when_the_run_fails_before_its_first_row(runner, image_dir, tmp_path):
    missing_model = str(tmp_path / "no-such-model")
    out = tmp_path / "out" / "scores.csv"
    out.parent.mkdir()
    out.write_text(OLD)
    bad_model = runner.invoke(app, ["score", str(image_dir), "-o", str(out), "--overwrite", "-m", missing_model])
    assert bad_model.exit_code == 1, bad_model.output
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = runner.invoke(app, ["score", str(empty), "-o", str(out), "--overwrite", "-m", missing_model])
    assert no_images.exit_code == 1 and "no images found" in str(no_images.exception)
    assert out.read_text() == OLD
    assert only_file_in(out.parent, "scores.csv")

    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"a,b\n{image_dir / 'astronaut.png'},{image_dir / 'camera.png'}\n")
    prefs = tmp_path / "out" / "prefs.csv"
    prefs.write_text("a,b,p_a_better,better,error\nx.png,y.png,0.9000,a,\n")
    compared = runner.invoke(app, ["compare", "--pairs", str(pairs), "-o", str(prefs), "--overwrite", "-m",
                                   missing_model])  # fmt: skip
    assert compared.exit_code == 1, compared.output
    assert prefs.read_text() == "a,b,p_a_better,better,error\nx.png,y.png,0.9000,a,\n"

    make_spaq(tmp_path / "iqa")
    results = tmp_path / "bench"
    results.mkdir()
    (results / "predictions.csv").write_text("earlier predictions\n")
    (results / "metrics.json").write_text("{}\n")
    benched = runner.invoke(app, ["bench", "spaq", "--root", str(tmp_path / "iqa"), "--out", str(results),
                                  "--overwrite", "-m", missing_model])  # fmt: skip
    assert benched.exit_code == 1, benched.output
    assert (results / "predictions.csv").read_text() == "earlier predictions\n"
    assert (results / "metrics.json").read_text() == "{}\n"


def test_overwrite_replaces_the_file_with_the_new_rows_keeping_its_mode(runner, image_dir, tiny_llava, tmp_path):
    out = tmp_path / "out" / "scores.csv"
    out.parent.mkdir()
    out.write_text(OLD)
    out.chmod(0o640)
    result = runner.invoke(app, ["score", str(image_dir), "-o", str(out), "--overwrite", "-m", str(tiny_llava)])
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert sorted(Path(row["path"]).name for row in rows) == sorted(p.name for p in image_dir.iterdir())
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert only_file_in(out.parent, "scores.csv")


def test_overwrite_through_a_symlink_replaces_the_file_it_points_to(runner, image_dir, tiny_llava, tmp_path):
    real = tmp_path / "real.csv"
    real.write_text(OLD)
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    result = runner.invoke(app, ["score", str(image_dir), "-o", str(link), "--overwrite", "-m", str(tiny_llava)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and len(read_rows(real)) == 6


# -- --resume: error rows ----------------------------------------------------------------------------------------
def test_resume_scores_error_rows_again_and_keeps_rows_of_other_inputs(runner, image_dir, tiny_llava, tmp_path):
    out = tmp_path / "scores.csv"
    first = runner.invoke(app, ["score", str(image_dir), "-o", str(out), "-m", str(tiny_llava)])
    assert first.exit_code == 0, first.output
    other = "/elsewhere/not-an-input.png,42.0000,3.0000,0-100,\n"
    out.write_text(spoil(out.read_text(), {"coffee.png", "camera.png"}) + other)
    kept = [line for line in out.read_text().splitlines()[1:] if "coffee" not in line and "camera" not in line]

    result = runner.invoke(app, ["score", str(image_dir), "-o", str(out), "-m", str(tiny_llava), "--resume"])
    assert result.exit_code == 0, result.output
    assert "5 row(s) already there, 2 image(s) to go (2 earlier error row(s) scored again)" in result.output
    summary = " ".join(result.output.split())
    assert "2 earlier error row(s) scored again" in summary.split("Scored", 1)[1]
    assert "1 row(s) match no input of this run (kept)" in summary
    rows = read_rows(out)
    assert sorted(Path(row["path"]).name for row in rows) == sorted([*(p.name for p in image_dir.iterdir()),
                                                                      "not-an-input.png"])  # fmt: skip
    assert not any(row["error"] for row in rows)
    assert out.read_text().splitlines()[1 : 1 + len(kept)] == kept  # the rows there were kept as they were


def test_compare_pairs_resume_compares_error_rows_again(runner, image_dir, tiny_llava, tmp_path):
    names = sorted(p.name for p in image_dir.iterdir())
    pairs = tmp_path / "pairs.csv"
    os.symlink(image_dir, tmp_path / "linked")
    pairs.write_text("a,b\n" + "".join(f"images/{names[i]},images/{names[i + 1]}\n" for i in range(3)))
    out = tmp_path / "prefs.csv"
    # Pair 1 was compared; pair 2 failed; pair 3 was written through another path to the same files.
    out.write_text(
        "a,b,p_a_better,better,error\n"
        f"images/{names[0]},images/{names[1]},0.9000,a,\n"
        f"images/{names[1]},images/{names[2]},,,cannot read image A: truncated file\n"
        f"linked/{names[2]},./images/{names[3]},0.2000,b,\n"
    )
    result = runner.invoke(app, ["compare", "--pairs", str(pairs), "-o", str(out), "-m", str(tiny_llava), "--resume"])
    assert result.exit_code == 0, result.output
    assert "1 earlier error row(s) compared again" in " ".join(result.output.split())
    written = list(csv.DictReader(out.open()))
    assert [(r["p_a_better"], r["error"]) for r in written[:2]] == [("0.9000", ""), ("0.2000", "")]
    assert len(written) == 3 and written[2]["a"] == f"images/{names[1]}" and written[2]["p_a_better"]


def test_bench_resume_scores_error_rows_again_from_another_folder(runner, tiny_llava, tmp_path, monkeypatch):
    make_spaq(tmp_path / "iqa")
    args = ["bench", "spaq", "-m", str(tiny_llava), "--split", "all", "--pairs", "0", "--workers", "0"]
    out = tmp_path / "results"
    monkeypatch.chdir(tmp_path)
    full = runner.invoke(app, [*args, "--root", "iqa", "--out", str(out)])
    assert full.exit_code == 0, full.output
    predictions = out / "predictions.csv"
    rows = read_csv(predictions.read_text())
    assert not os.path.isabs(rows[0]["path"])  # relative, as --root was given
    predictions.write_text(spoil(predictions.read_text(), {rows[1]["image"], rows[5]["image"]}))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    resumed = runner.invoke(app, [*args, "--root", str(tmp_path / "iqa"), "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "2 earlier error row(s) scored again" in " ".join(resumed.output.split())
    again = read_csv(predictions.read_text())
    assert sorted(r["image"] for r in again) == sorted(r["image"] for r in rows)  # each image once
    assert not any(r["error"] for r in again)


# -- --resume: matching paths ------------------------------------------------------------------------------------
def test_resume_matches_an_input_by_the_same_file_from_another_folder(runner, image_dir, tiny_llava, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    out = tmp_path / "scores.csv"
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["score", "images", "-o", "scores.csv", "-m", str(tiny_llava)])
    assert first.exit_code == 0, first.output
    before = out.read_text()
    assert "\nimages/" in before  # paths as written: relative to where the run started
    # Nothing is left to score, so the (missing) model is never loaded and the file stays as it is.
    missing = str(tmp_path / "no-such-model")
    for folder, spelling in ((tmp_path, "./images"), (tmp_path / "images", "."), (Path("/"), str(image_dir))):
        monkeypatch.chdir(folder)
        result = runner.invoke(app, ["score", spelling, "-o", str(out), "-m", missing, "--resume"])
        assert result.exit_code == 0, (spelling, result.output)
        assert "6 row(s) already there, 0 image(s) to go" in result.output
        assert out.read_text() == before


def test_match_claims_each_row_once_and_prefers_a_scored_row(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("path,mos,error\na,,boom\na,50,\nb,,boom\nc,1,\n")
    with open_output(path, ["path", "mos", "error"], resume=True) as out:
        done = out.match(["a", "a", "b", "d"], lambda text: [text], lambda row: [row["path"]])
        assert done == [{"path": "a", "mos": "50", "error": ""}, None, None, None]
        # The second "a" takes the error row of "a", so it and "b" are done again; "c" matches no input and stays.
        assert (out.retried, out.unmatched) == (2, 1)
        assert out.existing_rows() == [{"path": "a", "mos": "50", "error": ""}, {"path": "c", "mos": "1", "error": ""}]
        assert "boom" in path.read_text()  # nothing is rewritten before the first new row
        out.write({"path": "b", "mos": "7", "error": ""})
    assert path.read_text() == "path,mos,error\na,50,\nc,1,\nb,7,\n"
    assert only_file_in(tmp_path, "x.csv")

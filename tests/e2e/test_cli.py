"""The command line: Typer's CliRunner for the commands, main() for error handling, one real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image
from support.cli_output import read_csv
from support.processes import process_env

from vcritic.cli.app import app, main

pytestmark = pytest.mark.slow


@pytest.fixture
def twenty_images(tmp_path, sample_images):
    """19 real images of varied size and format, and one corrupt file among them."""
    folder = tmp_path / "photos"
    folder.mkdir()
    sources = list(sample_images.values())
    for i in range(19):
        image = sources[i % len(sources)].resize((40 + 7 * i, 30 + 5 * i))
        image.save(
            folder / f"img{i:02d}.{'png' if i % 3 else 'jpg'}" if image.mode != "RGBA" else folder / f"img{i:02d}.png"
        )
    (folder / "img07_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated nonsense")
    return folder


def test_score_folder_with_one_corrupt_file(runner, twenty_images, tiny_llava, tmp_path):
    out = tmp_path / "scores.csv"
    args = ["score", str(twenty_images), "--model", str(tiny_llava), "-o", str(out), "--batch-size", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    rows = read_csv(out.read_text())
    assert len(rows) == 20
    assert list(rows[0]) == ["path", "mos", "mos_std", "scale", "error"]
    scored = [row for row in rows if not row["error"]]
    failed = [row for row in rows if row["error"]]
    assert len(scored) == 19 and len(failed) == 1
    assert failed[0]["path"].endswith("img07_corrupt.jpg") and failed[0]["mos"] == ""
    assert all(0 <= float(row["mos"]) <= 100 and row["scale"] == "0-100" for row in scored)
    assert "Scored 19 of 20 images" in result.output


def test_score_to_stdout_and_batch_size_does_not_change_scores(runner, image_dir, tiny_llava):
    big = runner.invoke(app, ["score", str(image_dir), "-m", str(tiny_llava), "-b", "6", "--workers", "1"])
    small = runner.invoke(app, ["score", str(image_dir), "-m", str(tiny_llava), "-b", "1", "--workers", "0"])
    assert big.exit_code == small.exit_code == 0, big.output
    rows_big, rows_small = read_csv(big.stdout), read_csv(small.stdout)
    assert [r["path"] for r in rows_big] == [r["path"] for r in rows_small]
    for a, b in zip(rows_big, rows_small, strict=True):
        assert float(a["mos"]) == pytest.approx(float(b["mos"]), abs=1e-3)  # 4 decimals written


def test_score_refuses_to_overwrite_results(runner, image_dir, tiny_llava, tmp_path):
    out = tmp_path / "scores.csv"
    out.write_text("earlier results\n")
    result = runner.invoke(app, ["score", str(image_dir), "-m", str(tiny_llava), "-o", str(out)])
    assert result.exit_code != 0
    assert out.read_text() == "earlier results\n"
    again = runner.invoke(app, ["score", str(image_dir), "-m", str(tiny_llava), "-o", str(out), "--overwrite"])
    assert again.exit_code == 0 and len(read_csv(out.read_text())) == 6


def test_compare_two_images_both_orders(runner, image_dir, tiny_llava):
    a, b = str(image_dir / "astronaut.png"), str(image_dir / "coffee.png")
    ab = runner.invoke(app, ["compare", a, b, "-m", str(tiny_llava), "--json"])
    ba = runner.invoke(app, ["compare", b, a, "-m", str(tiny_llava), "--json"])
    assert ab.exit_code == ba.exit_code == 0, ab.output
    first, second = json.loads(ab.stdout), json.loads(ba.stdout)
    assert first["a"] == a and first["b"] == b
    assert first["p_a_better"] + second["p_a_better"] == pytest.approx(1.0, abs=2e-6)
    assert {first["better"], second["better"]} == {"a", "b"}
    human = runner.invoke(app, ["compare", a, b, "-m", str(tiny_llava)])
    label = "A" if first["better"] == "a" else "B"
    winner = a if label == "A" else b
    assert human.stdout == f"{label} is better ({winner}): P(A better than B) = {first['p_a_better']:.4f}\n"


def test_compare_pairs_file_carries_extra_columns(runner, image_dir, tiny_llava, tmp_path):
    pairs = tmp_path / "pairs.csv"
    rel = os.path.relpath(image_dir, tmp_path)
    pairs.write_text(
        "id,a,b,note\n"
        f"1,{rel}/astronaut.png,{rel}/coffee.png,x\n"
        f"2,{rel}/coffee.png,{rel}/astronaut.png,y\n"
        f"3,{rel}/coffee.png,{rel}/missing.png,z\n"
    )
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["compare", "--pairs", str(pairs), "-o", str(out), "-m", str(tiny_llava)])
    assert result.exit_code == 3, result.output
    rows = read_csv(out.read_text())
    assert list(rows[0]) == ["id", "a", "b", "note", "p_a_better", "better", "error"]
    assert [r["id"] for r in rows] == ["1", "2", "3"] and [r["note"] for r in rows] == ["x", "y", "z"]
    assert float(rows[0]["p_a_better"]) + float(rows[1]["p_a_better"]) == pytest.approx(1.0, abs=2e-4)
    assert rows[2]["error"] == "file not found" and rows[2]["p_a_better"] == ""


def test_pairs_file_without_columns_is_a_one_line_error(capsys, tmp_path, tiny_llava):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("left,right\nx.png,y.png\n")
    code = main(["compare", "--pairs", str(pairs), "-m", str(tiny_llava)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == [
        f"Error: {pairs} has no column a or b (columns: left, right)",
        "Hint: the header must name the two image columns a and b",
    ]


def test_user_errors_print_message_and_hint_without_traceback(capsys, image_dir, tiny_llava, monkeypatch):
    monkeypatch.delenv("VCRITIC_DEBUG", raising=False)
    assert main(["score", str(image_dir), "-m", str(tiny_llava), "--dtype", "int4"]) == 2
    err = capsys.readouterr().err
    assert err == "Error: unknown dtype 'int4'\nHint: use one of: bfloat16, float16, float32\n"
    assert main(["score", str(image_dir / "nothing-here")]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_debug_variable_shows_the_traceback(image_dir, tiny_llava, monkeypatch):
    from vcritic.errors import VcriticError

    monkeypatch.setenv("VCRITIC_DEBUG", "1")
    with pytest.raises(VcriticError):
        main(["score", str(image_dir), "-m", str(tiny_llava), "--dtype", "int4"])


def test_usage_errors_exit_2(capsys):
    assert main(["score", "x.png", "--batch-size", "0"]) == 2
    assert main(["no-such-command"]) == 2


def test_help_documents_scale_and_exit_status(runner):
    result = runner.invoke(app, ["score", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "0-100" in text and "Exit status: 0 every image scored; 3 finished, but some rows have an error" in text


def test_installed_entry_point_scores_a_folder(image_dir, tiny_llava, tmp_path):
    exe = shutil.which("vcritic", path=os.path.dirname(sys.executable))
    assert exe, "the vcritic console script must be installed in this environment"
    Image.new("RGBA", (33, 21), (10, 200, 30, 128)).save(image_dir / "translucent.png")
    out = tmp_path / "s.csv"
    proc = subprocess.run(
        [exe, "score", str(image_dir), "--model", str(tiny_llava), "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # the CSV went to the file; only the summary goes to stderr
    assert "Scored 7 of 7 images" in proc.stderr
    assert len(read_csv(out.read_text())) == 7


def test_user_text_is_printed_verbatim_not_as_markup(image_dir, capsys):
    missing = image_dir / "shot[x].png"
    assert main(["compare", str(missing), str(image_dir / "astronaut.png"), "-m", "no-such"]) == 1
    assert f"cannot read image A ({missing}): file not found" in capsys.readouterr().err


def test_bench_plot_without_matplotlib_fails_before_the_run(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,mos\na.png,50\n")
    assert main(["bench", str(manifest), "--plot", "-m", "no-such-model"]) == 1
    err = capsys.readouterr().err
    assert "--plot needs matplotlib" in err and "pip install 'vcritic[plot]'" in err


@pytest.mark.parametrize(
    "args",
    [["compare", "a.png"], ["compare", "a.png", "b.png", "--pairs", "p.csv"], ["compare", "a.png", "b.png", "-o", "x"]],
)
def test_compare_usage_errors_exit_2(args):
    assert main(args) == 2


def test_version_completion_and_help_without_type_noise(runner):
    assert runner.invoke(app, ["-V"]).output == runner.invoke(app, ["--version"]).output
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "150"}).output
    assert "--install-completion" in top
    every = ["score", "compare", "describe", "chat", "bench", "report", "download", "train", "models", "models rm",
             "data build", "data synth"]  # fmt: skip
    for command in every:
        text = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "150"}).output
        assert "Usage:" in text and "<bool>" not in text and "<list[" not in text, command
    score_help = runner.invoke(app, ["score", "--help"], env={"COLUMNS": "150"}).output
    assert score_help.count("VCRITIC_MODEL") == 1


def test_python_dash_m_vcritic_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "vcritic", "-V"], capture_output=True, text=True,
                            env=process_env(), timeout=60)  # fmt: skip
    assert result.returncode == 0 and result.stdout.startswith("vcritic ")


def test_progress_is_logged_in_lines_without_a_terminal(runner, image_dir, tiny_llava, tmp_path, monkeypatch):
    from vcritic.cli import _output

    monkeypatch.delenv("VCRITIC_NO_PROGRESS")
    monkeypatch.setattr(_output, "LOG_INTERVAL_S", 0.0)
    result = runner.invoke(app, ["score", str(image_dir), "-m", str(tiny_llava), "-o", str(tmp_path / "s.csv"),
                                 "-b", "2", "--workers", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Scoring: 2/6 (33%)" in result.output and "Scoring: 6/6 (100%)" in result.output
    assert f"Model: {tiny_llava}, loaded in " in result.output


def test_score_to_stdout_that_fails_before_any_row_prints_no_header(runner, image_dir, tmp_path):
    # A pipeline reading stdout must not take a lone header from a failed run for an empty result.
    result = runner.invoke(app, ["score", str(image_dir), "-m", str(tmp_path / "no-such-model"), "-o", "-"])
    assert result.exit_code == 1 and result.stdout == ""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    nothing = runner.invoke(app, ["score", str(empty), "-m", str(tmp_path / "no-such-model")])
    assert nothing.exit_code != 0 and nothing.stdout == ""

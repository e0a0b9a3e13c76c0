"""Bad input and failing outputs end to end: resume alone after a config, a full disk or a closed pipe on stdout (the
CLI as a real process), the folders score did not search; on a tiny model or a bench run without one."""

from __future__ import annotations

import pytest
from support.processes import process_env

from vcritic.cli.app import main


@pytest.mark.slow
def test_resume_alone_finishes_a_run_started_with_a_config(tiny_llava, tmp_path, capsys, sample_images):
    import shutil

    from support.training import write_pairs

    data = write_pairs(tmp_path / "data", [sample_images[k] for k in ("astronaut", "chelsea")], n=2)
    out = tmp_path / "out"
    args = ["train", "--stage", "1", "--model", str(tiny_llava), "--data", str(data), "--output", str(out)]
    assert main([*args, "--config", "tiny", "--steps", "2", "--batch-size", "2", "--save-every", "1"]) == 0
    shutil.rmtree(out / "checkpoints" / "step-2")
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0, capsys.readouterr().err
    assert "step 2/2" in capsys.readouterr().err
    # A setting that differs from the run's is refused naming where it came from.
    shutil.rmtree(out / "checkpoints" / "step-2")
    assert main([*args, "--config", "paper", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "cannot resume with a different" in err and "--config" in err and "run.json" in err


def _vcritic(args, stdout, timeout=120):
    import subprocess
    import sys

    env = process_env()
    env.pop("VCRITIC_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "vcritic", *map(str, args)], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, env=env)  # fmt: skip


@pytest.fixture
def bench_json(tmp_path):
    """A bench run that needs no model: its --json metrics go to stdout."""
    from support.dataset_fixtures import make_koniq10k

    from vcritic.evaluation import bench

    make_koniq10k(tmp_path)
    records = bench.prepare("koniq10k", tmp_path, split="all").records
    scores = tmp_path / "scores.csv"
    scores.write_text("path,mos,scale,error\n" + "".join(f"{r.path},{r.mos:.3f},0-100,\n" for r in records))
    return ["bench", "koniq10k", "--root", tmp_path, "--predictions", scores, "--json"]


@pytest.mark.slow
def test_a_full_disk_on_stdout_is_one_line_and_exit_1(bench_json):
    # /dev/full only ever as the stdout of a child process: nothing is written over it.
    with open("/dev/full", "w") as full:
        result = _vcritic(bench_json, full)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert "\nError: cannot write to standard output: No space left on device\n" in result.stderr


@pytest.mark.slow
def test_a_reader_that_left_ends_the_run_quietly(bench_json):
    import os

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte: every write is EPIPE
    try:
        result = _vcritic(bench_json, write)
    finally:
        os.close(write)
    assert result.returncode == 141, result.stderr
    assert "Error" not in result.stderr and "Traceback" not in result.stderr and "Exception" not in result.stderr


@pytest.mark.slow
def test_score_to_a_full_disk_on_stdout_is_one_line_and_exit_1(tiny_llava, tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "a.png")
    with open("/dev/full", "w") as full:
        result = _vcritic(["score", tmp_path / "a.png", "-m", tiny_llava, "-o", "-"], full, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Error: cannot write to standard output: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


@pytest.mark.slow
def test_score_says_which_folders_it_did_not_search(tmp_path, tiny_llava, capsys):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "a.png")
    (photos / "linked").symlink_to(tmp_path, target_is_directory=True)
    assert main(["score", str(photos), "-m", str(tiny_llava), "-o", str(tmp_path / "s.csv")]) == 0
    err = capsys.readouterr().err
    assert f"Not searched: 1 folder(s) (e.g. {photos / 'linked'}: a linked folder (not followed))" in err

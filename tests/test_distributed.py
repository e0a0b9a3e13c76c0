"""Data-parallel `vcritic score` under `accelerate launch` with two CPU processes (gloo): one CSV, input order, each
image exactly once, --resume, and no hang when process 0 refuses to start."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vcritic.errors import VcriticError

ROOT = Path(__file__).resolve().parents[1]
# accelerate's --cpu launcher starts one process; --multi_gpu starts torchrun, and --device cpu makes it gloo.
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_images):
    folder = tmp_path_factory.mktemp("dp") / "photos"
    folder.mkdir()
    sources = [image.convert("RGB") for image in sample_images.values()]
    for i in range(21):
        sources[i % len(sources)].resize((40 + 3 * i, 50 + 2 * i)).save(folder / f"img{i:02d}.png")
    (folder / "img13_broken.jpg").write_bytes(b"not an image")
    return folder


def _score(args, processes: int, timeout: int = 240):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    launch = LAUNCH if processes > 1 else [sys.executable]
    command = [*launch, "-m", "vcritic", "score", *args, "--device", "cpu", "--batch-size", "3"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _same(got: list[dict[str, str]], want: list[dict[str, str]]) -> None:
    assert [row["path"] for row in got] == [row["path"] for row in want]
    assert [row["error"] for row in got] == [row["error"] for row in want]
    for a, b in zip(got, want, strict=True):
        if b["mos"]:
            assert float(a["mos"]) == pytest.approx(float(b["mos"]), abs=1e-3)


@pytest.mark.slow
def test_two_processes_write_one_csv_in_input_order_and_resume(tiny_llava, photos, tmp_path):
    single = tmp_path / "single.csv"
    assert _score([str(photos), "-m", str(tiny_llava), "-o", str(single)], processes=1).returncode == 3
    want = _rows(single)
    assert len(want) == 22

    both = tmp_path / "both.csv"
    result = _score([str(photos), "-m", str(tiny_llava), "-o", str(both)], processes=2)
    assert "Scored 21 of 22 images" in result.stderr and "2 processes" in result.stderr, result.stderr[-3000:]
    assert result.stderr.count("Scored 21 of 22") == 1  # one summary, from process 0
    _same(_rows(both), want)

    # A run cut off after 7 rows (and half of the 8th): --resume with two processes finishes it.
    lines = both.read_text().splitlines(keepends=True)
    partial = tmp_path / "partial.csv"
    partial.write_text("".join(lines[:8]) + lines[8][:10])
    result = _score([str(photos), "-m", str(tiny_llava), "-o", str(partial), "--resume"], processes=2)
    assert "7 row(s) already there, 15 image(s) to go" in result.stderr, result.stderr[-3000:]
    _same(_rows(partial), want)


@pytest.mark.slow
def test_process_zero_refusing_stops_every_process(tiny_llava, photos, tmp_path):
    existing = tmp_path / "exists.csv"
    existing.write_text("path,mos,mos_std,scale,error\n")
    result = _score([str(photos), "-m", str(tiny_llava), "-o", str(existing)], processes=2, timeout=120)
    assert result.returncode != 0
    assert f"{existing} already exists" in result.stderr
    assert existing.read_text() == "path,mos,mos_std,scale,error\n"


def test_single_process_has_no_team_and_device_map_refuses_several(monkeypatch):
    from vcritic.distributed import team_for

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert team_for("cpu") is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(VcriticError, match="--device-map spreads one model over all GPUs"):
        team_for(None, "auto")


def test_device_map_auto_loads_through_the_one_loading_path(tiny_llava, sample_images):
    from vcritic.loading import load_critic

    image = sample_images["chelsea"]
    placed = load_critic(tiny_llava, device="cpu", device_map="auto")
    assert placed.device.type == "cpu"  # no GPU here: everything lands on the CPU
    plain = load_critic(tiny_llava, device="cpu")
    assert placed.score(image).mos == pytest.approx(plain.score(image).mos, abs=1e-5)


def test_commands_that_do_not_split_refuse_several_processes(monkeypatch, tiny_llava, tmp_path):
    from typer.testing import CliRunner

    from vcritic.cli.app import app

    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, ["bench", "koniq10k", "-m", str(tiny_llava)])
    assert isinstance(result.exception, VcriticError)
    assert result.exception.message == "vcritic bench does not run data-parallel yet; only score does"
    assert "--predictions scores.csv" in result.exception.hint
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (20, 20)).save(image)
    result = CliRunner().invoke(app, ["compare", str(image), str(image), "-m", str(tiny_llava)])
    assert "vcritic compare does not run data-parallel yet" in str(result.exception)


def test_only_the_first_process_is_main_on_the_terminal(monkeypatch):
    from vcritic.distributed import is_secondary_process

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "1")
    assert not is_secondary_process()  # not launched: RANK alone means nothing
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert is_secondary_process()
    monkeypatch.setenv("RANK", "0")
    assert not is_secondary_process()


@pytest.mark.slow
@pytest.mark.needs_torchvision
@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="needs torchvision")
def test_two_processes_with_reproducible_write_the_single_process_csv_exactly(tiny_models, photos, tmp_path):
    """Each process scores every other image, so every image meets other neighbours than in one process; with
    fixed shapes the CSV is the same text (Qwen2.5-VL: images of several patch grids)."""
    model = str(tiny_models("qwen2_5_vl"))
    outputs = {}
    for processes in (1, 2):
        outputs[processes] = tmp_path / f"{processes}.csv"
        args = [str(photos), "-m", model, "-o", str(outputs[processes]), "--reproducible", "--tasks", "all"]
        result = _score(args, processes=processes)  # the broken file: exit 3 (the launcher makes it 1)
        assert "Scored 21 of 22 images" in result.stderr and "fixed shapes of 8 rows" in result.stderr, result.stderr
    assert outputs[2].read_text() == outputs[1].read_text()

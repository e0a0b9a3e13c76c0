"""Data parallel without a launch: one process has no team, --device-map auto loads through the one loading path, the
commands that do not split refuse several processes, and only process 0 writes to the terminal."""

from __future__ import annotations

import pytest

from vcritic.errors import VcriticError


def test_single_process_has_no_team_and_device_map_refuses_several(monkeypatch):
    from vcritic.pipeline.distributed import team_for

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert team_for("cpu") is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(VcriticError, match="--device-map spreads one model over all GPUs"):
        team_for(None, "auto")


def test_device_map_auto_loads_through_the_one_loading_path(tiny_llava, sample_images):
    from vcritic.inference.loading import load_critic

    image = sample_images["chelsea"]
    placed = load_critic(tiny_llava, device="cpu", device_map="auto")
    assert placed.device.type == "cpu"  # no GPU here: everything lands on the CPU
    plain = load_critic(tiny_llava, device="cpu")
    assert placed.score(image).mos == pytest.approx(plain.score(image).mos, abs=1e-5)


def test_commands_that_do_not_split_refuse_several_processes(monkeypatch, tiny_llava, tmp_path):
    from typer.testing import CliRunner

    from vcritic.cli.app import app

    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, ["rank", str(tmp_path), "-m", str(tiny_llava)])
    assert isinstance(result.exception, VcriticError)
    assert result.exception.message == "vcritic rank does not run data-parallel; score, compare --pairs and bench do"
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (20, 20)).save(image)
    result = CliRunner().invoke(app, ["compare", str(image), str(image), "-m", str(tiny_llava)])
    assert "vcritic compare does not run data-parallel" in str(result.exception)
    assert "compare --pairs runs data-parallel" in result.exception.hint


def test_only_the_first_process_is_main_on_the_terminal(monkeypatch):
    from vcritic.pipeline.distributed import is_secondary_process

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "1")
    assert not is_secondary_process()  # not launched: RANK alone means nothing
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert is_secondary_process()
    monkeypatch.setenv("RANK", "0")
    assert not is_secondary_process()

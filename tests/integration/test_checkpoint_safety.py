"""A checkpoint folder is data, not code: ``train --resume`` never unpickles an arbitrary object from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support.training import read_metrics, wiring_config, write_pairs

from vcritic.cli.app import main
from vcritic.errors import VcriticError
from vcritic.training.run import train


class _Planted:
    """What a hostile checkpoint holds: unpickling it creates ``marker`` (a harmless stand-in for running code)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# Every test here trains a tiny model: on one torch thread (conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def run(tiny_llava, tmp_path, sample_images):
    """A finished two-step run with a checkpoint per step, and the arguments that resume it for one more step."""
    data = write_pairs(tmp_path / "data", [sample_images[k] for k in ("astronaut", "chelsea")], n=2)
    out = tmp_path / "out"
    args = dict(model=str(tiny_llava), data=data, output=out, stage=1)
    train(**args, config=wiring_config(steps=2, save_every=1, batch_size=2))
    return args, out / "checkpoints" / "step-2"


def _plant(path: Path, marker: Path) -> None:
    torch.save(_Planted(marker), path)


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "optimizer.bin", "random_states_0.pkl"])
def test_a_planted_object_in_a_checkpoint_never_runs_on_resume(run, tmp_path, name):
    args, checkpoint = run
    assert (checkpoint / name).exists() or name == "custom_checkpoint_0.pkl"
    marker = tmp_path / "ran"
    _plant(checkpoint / name, marker)
    try:
        train(**args, config=wiring_config(steps=3, batch_size=2), resume=True)
    except VcriticError as err:
        assert name in err.message and "--allow-pickle" in err.hint and "\n" not in err.message
    else:
        # Loaded without it: then the file was never read as a pickle (the scheduler's state is JSON).
        assert name == "custom_checkpoint_0.pkl"
        assert [r["step"] for r in read_metrics(args["output"])] == [1, 2, 3]
    assert not marker.exists(), "unpickling the checkpoint ran code"


def test_cli_resume_refuses_a_planted_object_in_one_line(run, tmp_path, capsys):
    args, _ = run
    out = tmp_path / "cli"
    cli = ["train", "--stage", "1", "--model", args["model"], "--data", str(args["data"]), "--output", str(out)]
    cli += ["--config", "tiny", "--batch-size", "2", "--save-every", "1"]
    assert main([*cli, "--steps", "1"]) == 0
    marker = tmp_path / "ran"
    _plant(out / "checkpoints" / "step-1" / "optimizer.bin", marker)
    capsys.readouterr()
    assert main([*cli, "--steps", "2", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "optimizer.bin" in err and "Traceback" not in err and "--allow-pickle" in err
    assert not marker.exists()


def test_a_checkpoint_from_before_the_json_scheduler_still_resumes(run):
    """Checkpoints written by earlier versions hold the scheduler as custom_checkpoint_0.pkl: plain data, read
    without running anything."""
    args, checkpoint = run
    state = json.loads((checkpoint / "scheduler.json").read_text())
    torch.save(state, checkpoint / "custom_checkpoint_0.pkl")
    (checkpoint / "scheduler.json").unlink()
    train(**args, config=wiring_config(steps=3, batch_size=2), resume=True)
    assert [r["step"] for r in read_metrics(args["output"])] == [1, 2, 3]


def test_a_damaged_schedule_or_a_fifo_in_a_checkpoint_is_one_line_not_a_hang(run, tmp_path):
    import os

    args, checkpoint = run
    (checkpoint / "scheduler.json").write_text("{not json")
    with pytest.raises(VcriticError, match="scheduler.json is not a scheduler.json vcritic can read") as err:
        train(**args, config=wiring_config(steps=3, batch_size=2), resume=True)
    assert "damaged" in err.value.hint
    (checkpoint / "random_states_0.pkl").unlink()
    os.mkfifo(checkpoint / "random_states_0.pkl")
    with pytest.raises(VcriticError, match="random_states_0.pkl is not a regular file"):
        train(**args, config=wiring_config(steps=3, batch_size=2), resume=True)

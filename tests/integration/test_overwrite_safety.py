"""``--overwrite`` deletes only what vcritic wrote, and only in a folder vcritic made."""

from __future__ import annotations

import json

import pytest
from support.training import wiring_config, write_pairs

from vcritic.cli.app import main
from vcritic.errors import VcriticError
from vcritic.training.run import train

# Every test here trains a tiny model: on one torch thread (conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def args(tiny_llava, tmp_path, sample_images):
    data = write_pairs(tmp_path / "data", [sample_images[k] for k in ("astronaut", "chelsea")], n=2)
    return dict(model=str(tiny_llava), data=data, stage=1, config=wiring_config(steps=1, batch_size=2, save_every=1))


def test_a_folder_that_only_holds_a_run_json_is_not_wiped(args, tmp_path, capsys):
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "important.txt").write_text("keep me")
    (project / "run.json").write_text(json.dumps({"stage": 1}))
    # Was emptied, exit 0: a run.json was all it took to count as a training output.
    cli = ["train", "--stage", "1", "--model", args["model"], "--data", str(args["data"]), "--output", str(project)]
    assert main([*cli, "--config", "tiny", "--steps", "1", "--batch-size", "2", "--overwrite"]) == 1
    assert "is not a folder vcritic train made" in capsys.readouterr().err
    assert (project / "important.txt").read_text() == "keep me" and (project / ".git" / "HEAD").is_file()


def test_overwrite_replaces_a_vcritic_output_but_never_a_file_put_there_since(args, tmp_path):
    out = tmp_path / "out"
    train(**args, output=out)
    written = json.loads((out / ".vcritic-output.json").read_text())["files"]
    assert {"vcritic.json", "adapter_model.safetensors", "adapter_config.json"} <= set(written)
    (out / "notes.txt").write_text("mine")
    (out / "checkpoints" / "keep.txt").write_text("mine too")
    for stray in ("notes.txt", "checkpoints/keep.txt"):
        with pytest.raises(VcriticError, match=f"holds {stray}, which vcritic did not write") as err:
            train(**args, output=out, overwrite=True)
        assert "\n" not in err.value.message
        assert (out / stray).read_text().startswith("mine") and (out / "vcritic.json").is_file()
        (out / stray).unlink()
    train(**args, output=out, overwrite=True)
    assert (out / "vcritic.json").is_file() and [p.name for p in (out / "checkpoints").iterdir()] == ["step-1"]


def test_a_run_stopped_before_its_export_is_still_replaced(args, tmp_path):
    out = tmp_path / "out"

    def stop(record):
        if record["event"] == "checkpoint":
            raise RuntimeError("stopped")

    with pytest.raises(VcriticError):
        train(**args, output=out, on_event=stop)
    assert not (out / "vcritic.json").exists()
    train(**args, output=out, overwrite=True)
    assert (out / "vcritic.json").is_file()

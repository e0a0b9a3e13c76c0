"""`vcritic download`, `vcritic models`, `vcritic models rm` and offline use, through the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from vcritic.base.home import hub_cache_dir
from vcritic.cli.app import app, main
from vcritic.model import presets
from vcritic.model.presets import PRESETS, Preset
from vcritic.model.readout_specs import VCRITIC

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_preset(fake_hub, tiny_llava, monkeypatch):
    """The tiny LLaVA served as tiny/llava and registered as preset 'tiny', pinned to its commit."""
    sha = fake_hub.add_repo("tiny/llava", tiny_llava)
    monkeypatch.setitem(PRESETS, "tiny", Preset("tiny", "tiny/llava", sha, "llava", VCRITIC, "MIT", 0.001, "test"))
    return sha


def test_download_prints_the_snapshot_and_is_idempotent(runner, tiny_preset):
    result = runner.invoke(app, ["download", "tiny"])
    assert result.exit_code == 0, result.output
    snapshot = hub_cache_dir() / "models--tiny--llava" / "snapshots" / tiny_preset
    assert result.stdout == f"{snapshot}\n"
    assert result.stderr.startswith(f"Downloaded tiny (tiny/llava) (commit {tiny_preset[:12]}, ")

    again = runner.invoke(app, ["download", "tiny", "--json"])
    record = json.loads(again.stdout)
    assert record["downloaded"] is False and record["commit"] == tiny_preset and record["size_bytes"] > 100_000
    assert record["path"] == str(snapshot)


def test_models_lists_presets_and_the_cache_then_rm_frees_it(runner, tiny_preset, fake_hub):
    fake_hub.add_repo("other/model", {"config.json": b"{}", "model.safetensors": b"weights"})
    before = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert {p["name"]: p["cached"] for p in before["presets"]}["tiny"] == "no" and before["other"] == []
    assert [p["name"] for p in before["presets"] if p["default"]] == [presets.DEFAULT_PRESET]

    assert runner.invoke(app, ["download", "tiny"]).exit_code == 0
    assert runner.invoke(app, ["download", "other/model"]).exit_code == 0
    listing = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    tiny = next(p for p in listing["presets"] if p["name"] == "tiny")
    assert tiny["cached"] == "yes" and tiny["size_bytes"] > 100_000 and tiny["path"].endswith(tiny_preset)
    assert [o["repo"] for o in listing["other"]] == ["other/model"] and listing["other"][0]["refs"] == ["main"]

    table = runner.invoke(app, ["models"], terminal_width=120)
    assert table.exit_code == 0
    assert "tiny/llava" in table.stdout and "yes, " in table.stdout
    assert "Other models in the cache" in table.stdout and "other/model" in table.stdout
    assert "Removed" not in table.stdout

    removed = runner.invoke(app, ["models", "rm", "tiny"])
    assert removed.exit_code == 0 and removed.stderr.startswith("Removed tiny/llava from the cache (freed ")
    after = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert next(p for p in after["presets"] if p["name"] == "tiny")["cached"] == "no"
    assert not (hub_cache_dir() / "models--tiny--llava").exists()


def test_score_a_downloaded_model_offline(runner, tiny_preset, fake_hub, image_dir, monkeypatch):
    assert runner.invoke(app, ["download", "tiny"]).exit_code == 0
    fake_hub.stop()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["score", str(image_dir), "--model", "tiny"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1 + 6  # header + one row per image


def test_offline_miss_is_one_line_and_exit_1(capsys, image_dir):
    assert main(["score", str(image_dir), "--model", "org/not-cached"]) == 1
    assert capsys.readouterr().err == (
        "Error: org/not-cached is not in the local cache and the hub is offline (HF_HUB_OFFLINE); "
        "fetch it first with: vcritic download org/not-cached\n"
    )
    assert main(["download", "org/not-cached"]) == 1
    assert "the hub is offline" in capsys.readouterr().err


def test_pickle_only_repo_is_refused_unless_allowed(capsys, fake_hub):
    fake_hub.add_repo("old/pickled", {"config.json": b"{}", "pytorch_model.bin": b"pickle"})
    assert main(["download", "old/pickled"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: old/pickled has only pickled weights (pytorch_model.bin), which can run code")
    assert "Hint: pass --allow-pickle" in err
    assert main(["download", "old/pickled", "--allow-pickle"]) == 0


def test_typo_in_a_preset_name(capsys):
    assert main(["download", "instructblip-vicuna7b"]) == 1
    assert "did you mean instructblip-vicuna-7b?" in capsys.readouterr().err


def test_installed_command_offline_miss(tmp_path, image_dir):
    """A real process started with HF_HUB_OFFLINE=1, as a user would run it: no network, one line, exit 1."""
    exe = shutil.which("vcritic", path=os.path.dirname(sys.executable))
    assert exe, "the vcritic console script must be installed in this environment"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "VCRITIC_HOME": str(tmp_path)}
    proc = subprocess.run(
        [exe, "score", str(image_dir), "-m", "qwen2.5-vl-7b"], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "Error: qwen2.5-vl-7b (Qwen/Qwen2.5-VL-7B-Instruct) is not in the local cache and the hub is offline "
        "(HF_HUB_OFFLINE); fetch it first with: vcritic download qwen2.5-vl-7b"
    ]

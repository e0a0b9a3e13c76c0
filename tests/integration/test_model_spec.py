"""The model options as one value (vcritic.inference.model_spec.ModelSpec): what it holds, which commands offer which of
the options and in which order, and that a spec's options reach the loaded critic."""

from __future__ import annotations

import inspect
import json

import pytest
import typer
from typer.testing import CliRunner

from vcritic.cli.app import app
from vcritic.inference.loading import load_critic
from vcritic.inference.model_spec import ModelSpec
from vcritic.model.readout_specs import Q_REALIGN, VCRITIC

EVERY = ["--model", "--readout", "--adapter", "--revision", "--batch-size", "--reproducible", "--workers",
         "--device", "--dtype", "--trust-remote-code", "--allow-pickle", "--max-pixels", "--image-size",
         "--device-map"]  # fmt: skip
NO_PAIR_READOUT = [o for o in EVERY if o != "--readout"]
NO_BATCHES = [o for o in EVERY if o not in ("--batch-size", "--workers")]
GENERATES = [o for o in NO_BATCHES if o != "--reproducible"]


def test_a_spec_holds_every_option_load_critic_takes():
    taken = {
        name for name, p in inspect.signature(load_critic).parameters.items() if name != "merge_adapter"
    }  # the CLI always merges an adapter, for speed
    kwargs = ModelSpec(reproducible=True, batch_size=4, workers=2).to_load_kwargs()
    assert set(kwargs) == taken
    assert kwargs["fixed_shapes"] is True  # --reproducible is load_critic's fixed_shapes
    assert ModelSpec(device="cpu").on("cuda:1") == ModelSpec(device="cuda:1")


@pytest.mark.parametrize(
    ("command", "expected"),
    [("score", EVERY), ("bench", EVERY), ("calibrate", EVERY), ("compare", NO_PAIR_READOUT),
     ("rank", NO_PAIR_READOUT), ("describe", GENERATES), ("chat", GENERATES), ("serve", NO_BATCHES)],
)  # fmt: skip
def test_every_model_command_offers_the_model_options_in_one_order(command, expected):
    click_command = typer.main.get_command(app).commands[command]
    offered = [p.opts[0] for p in click_command.params if p.opts[0] in EVERY]
    assert offered == expected


@pytest.mark.slow
def test_the_options_of_a_spec_reach_the_critic(tiny_llava, sample_images, tmp_path):
    from vcritic.cli._model import load_for_command

    critic = load_for_command(ModelSpec(str(tiny_llava), readout="q-realign", reproducible=True, device="cpu"))
    assert critic.judge.spec is Q_REALIGN and critic.fixed_shapes is not None
    assert critic.loaded.name == str(tiny_llava) and critic.device.type == "cpu"
    plain = ModelSpec(str(tiny_llava), device="cpu").load()
    assert plain.judge.spec is VCRITIC and plain.fixed_shapes is None

    # chat takes --readout now: its /score reads MOS the way that judge asks for it.
    image = tmp_path / "cat.png"
    sample_images["chelsea"].save(image)
    result = CliRunner().invoke(app, ["chat", str(image), "-m", str(tiny_llava), "--readout", "q-realign",
                                      "--device", "cpu", "-a", "/score", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    judged = ModelSpec(str(tiny_llava), readout="q-realign", device="cpu").load()
    expected = judged.chat(str(image)).score().mos
    assert json.loads(result.stdout)["score"]["mos"] == pytest.approx(expected, abs=1e-3)
    assert plain.chat(str(image)).score().mos != pytest.approx(expected, abs=1e-3)

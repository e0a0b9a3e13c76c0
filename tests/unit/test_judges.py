"""Read-out specs per preset (vcritic.model.judges): which read-out a model gets, the untrained marker, a reasoning
judge's parsed rating, the defaults, and how `vcritic models` and `vcritic score` show them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vcritic.cli.app import app
from vcritic.errors import VcriticError
from vcritic.model.judges import get_spec, judge_for, untrained_note
from vcritic.model.presets import CPU_DEFAULT_PRESET, DEFAULT_PRESET, PRESETS, default_preset, get_preset
from vcritic.model.readout_specs import Q_REALIGN, VCRITIC, VISUALQUALITY_R1


def test_each_preset_names_its_readout_size_memory_and_machine():
    assert get_preset("q-realign-mini-0.8b").spec is Q_REALIGN
    assert get_preset("visualquality-r1-7b").spec is VISUALQUALITY_R1
    assert get_preset("qwen2.5-vl-7b").spec is VCRITIC
    for preset in PRESETS.values():
        assert preset.bf16_gb == pytest.approx(2 * preset.params_b)
        assert preset.machine in ("CPU/laptop", "24 GB GPU", "80 GB GPU")
    assert get_preset("q-realign-mini-0.8b").machine == "CPU/laptop"
    assert get_preset("instructblip-vicuna-13b").machine == "80 GB GPU"
    assert get_preset("q-realign-lite-4b").srcc == (0.943, 0.932, 0.928)


def test_the_default_is_lite_with_cuda_and_mini_without():
    assert default_preset(cuda=True) == DEFAULT_PRESET == "q-realign-lite-4b"
    assert default_preset(cuda=False) == CPU_DEFAULT_PRESET == "q-realign-mini-0.8b"


def test_q_realign_reads_its_card_weights_on_vcritics_scale():
    question = Q_REALIGN.quality_question()
    assert question.instruction == "How would you rate the quality of this image?"
    assert question.answer_prefix == "The quality of the image is" and question.stem_separator == ""
    assert question.words == (" excellent", " good", " fair", " poor", " bad")
    assert question.values == (100.0, 75.0, 50.0, 25.0, 0.0)
    assert question.task == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>sharp, well lit</think><answer>4.50</answer>", 87.5),
        ("<answer>1</answer> then <answer>3.0</answer>", 50.0),  # the card takes the last answer
        ("no tags, just 2.2", 30.0),  # the card falls back to the whole text
        ("<answer>9</answer>", 100.0),  # clamped to the 1-5 scale
        ("<answer>none</answer>", None),
    ],
)
def test_a_reasoning_judges_rating_is_parsed_and_mapped_to_0_100(text, expected):
    rating = VISUALQUALITY_R1.parse_rating(text)
    assert rating == (pytest.approx(expected) if expected is not None else None)


def test_which_readout_a_model_gets(tmp_path):
    assert judge_for("q-realign-lite-4b").spec is Q_REALIGN
    assert judge_for("q-future/Q-ReAlign-Mini-0.8B").spec is Q_REALIGN  # by repo id too
    assert judge_for("some/other-model") == judge_for(None)  # vcritic's prompts, no declared tasks
    assert judge_for("some/other-model").trained_tasks is None
    assert judge_for("some/other-model", "q-realign-mini-0.8b").spec is Q_REALIGN  # --readout by preset name
    # A trained folder: what its vcritic.json records; an old one without the keys is asked vcritic's prompts.
    folder = tmp_path / "trained"
    folder.mkdir()
    (folder / "vcritic.json").write_text(json.dumps({"base_model": "x", "readout": "q-realign"}))
    assert judge_for(folder).spec is Q_REALIGN and judge_for(folder).trained_tasks is None
    (folder / "vcritic.json").write_text(json.dumps({"base_model": "x", "trained_tasks": ["mos", "attributes"]}))
    assert judge_for(folder).spec is VCRITIC and judge_for(folder).untrained(["mos", "authenticity"]) == (
        "authenticity",
    )
    with pytest.raises(VcriticError, match="unknown read-out 'q-relign'") as err:
        get_spec("q-relign")
    assert "did you mean q-realign" in err.value.hint


def test_untrained_tasks_are_named_for_a_quality_only_judge():
    judge = judge_for("q-realign-mini-0.8b")
    assert judge.untrained(["mos"]) == ()
    assert judge.untrained(["mos", "attributes", "authenticity"]) == ("attributes", "authenticity")
    note = untrained_note(judge, ["mos", "attributes"], "q-realign-mini-0.8b")
    assert note.startswith("Note: q-realign-mini-0.8b was trained for mos only; its attributes are zero-shot")
    assert untrained_note(judge_for("qwen2.5-vl-7b"), ["attributes"], "m") is None  # zero-shot: nothing declared


def test_models_lists_sizes_machines_trained_tasks_and_srcc(monkeypatch):
    from vcritic.cli._output import stdout

    monkeypatch.setattr(stdout, "_width", 220)  # a wide terminal: no folded cells
    runner = CliRunner()
    record = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    mini = next(p for p in record["presets"] if p["name"] == "q-realign-mini-0.8b")
    assert mini["default_without_cuda"] and mini["machine"] == "CPU/laptop" and mini["bf16_gb"] == 1.6
    assert mini["trained_tasks"] == ["mos"] and mini["srcc"] == {"koniq": 0.935, "spaq": 0.931, "kadid": 0.903}
    assert mini["readout_spec"]["stem"] == "The quality of the image is"
    table = runner.invoke(app, ["models"]).stdout
    assert "q-realign-lite-4b *" in table and "q-realign-mini-0.8b +" in table
    assert ".943 / .932 / .928" in table and "zero-shot" in table and "80 GB GPU" in table


def test_an_unknown_readout_is_refused_before_loading(capsys):
    from vcritic.cli.app import main

    assert main(["score", "nothing.jpg", "--readout", "q-relign"]) == 2  # a usage error, like every bad option value
    err = capsys.readouterr().err
    assert "unknown read-out 'q-relign'" in err and "Traceback" not in err


def test_a_trained_folder_records_its_readout_and_tasks(tmp_path):
    from vcritic.data.datadir import TrainData
    from vcritic.data.dialogues import Dialogue
    from vcritic.training.export import _judge_entries

    def taught(*questions):
        return TrainData([Dialogue(q, "", ("a.png",), "", "") for q in questions], [], tmp_path, {})

    # Stage 2 on top of Q-ReAlign: MOS is still asked Q-ReAlign's way; the attributes were taught with vcritic's.
    assert _judge_entries("q-realign-mini-0.8b", None, taught("brightness")) == ("q-realign", ["mos", "attributes"])
    assert _judge_entries("q-realign-mini-0.8b", None, taught("quality")) == ("vcritic", ["mos"])
    assert _judge_entries("qwen2.5-vl-7b", None, taught("compare")) == ("vcritic", [])
    previous = {"base_model": "x", "readout": "q-realign", "trained_tasks": ["mos", "attributes"]}
    assert _judge_entries("stage2", previous, taught("authenticity")) == (
        "q-realign",
        ["mos", "attributes", "authenticity"],
    )

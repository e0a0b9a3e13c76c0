"""Training pieces without a training run: label masking, the answer loss, config, data order, schedule."""

from __future__ import annotations

import math

import pytest
from PIL import Image
from support.families import family_params

from vcritic.data.dialogues import Dialogue
from vcritic.errors import VcriticError
from vcritic.inference.loading import load_critic
from vcritic.readout.prompts import COMPARE, DESCRIBE, QUALITY
from vcritic.training.collate import IGNORE, encode_dialogue
from vcritic.training.config import TrainConfig, explicit_keys, load_config
from vcritic.training.sampler import TaskBatchSampler, lr_at


def _pair_dialogue(word: str, instruction: str = COMPARE.instruction) -> Dialogue:
    return Dialogue("compare", "relativity", ("a.png", "b.png"), instruction, COMPARE.answer(word))


@pytest.mark.parametrize("family", family_params())
def test_labels_cover_exactly_the_answer_and_the_prompt_is_what_scoring_sees(tiny_models, family):
    critic = load_critic(tiny_models(family))
    a, b = Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("RGB", (30, 40), (30, 30, 200))
    item = encode_dialogue(critic.encoder, _pair_dialogue(" second"), [a, b])
    scoring = critic.encoder.encode_pair(a, b)

    ids, labels = item["input_ids"][0], item["labels"][0]
    n_prompt = scoring["input_ids"].shape[1]
    # The prompt part is token for token what compare asks, images included.
    assert ids[:n_prompt].tolist() == scoring["input_ids"][0].tolist()
    for key, value in scoring.items():
        if key in ("token_type_ids", "mm_token_type_ids"):  # token-aligned: the prompt part is the same
            assert item[key][:, :n_prompt].tolist() == value.tolist(), key
        elif key not in ("input_ids", "attention_mask") and hasattr(value, "shape"):
            assert value.shape == item[key].shape and (value == item[key]).all(), key
    assert (labels[:n_prompt] == IGNORE).all()
    answer = labels[n_prompt:].tolist()
    assert answer == ids[n_prompt:].tolist()
    # The first label is the token the readout reads for " second"; then "." and EOS.
    assert answer[0] == critic.token_ids(critic.pair_question)[1]
    assert critic.tokenizer.decode(answer[1:]).replace(" ", "") == "." + critic.tokenizer.eos_token
    assert item["attention_mask"][0].tolist() == [1] * len(ids)


def test_paraphrase_instruction_is_rendered_and_single_image_families_see_side_by_side(tiny_models):
    llava = load_critic(tiny_models("llava"))
    image = Image.new("RGB", (32, 32))
    dialogue = Dialogue("quality", "quality", ("x.png",), QUALITY.instructions[2], QUALITY.answer(" good"))
    item = encode_dialogue(llava.encoder, dialogue, [image])
    text = llava.tokenizer.decode(item["input_ids"][0])
    assert QUALITY.instructions[2] in text and text.rstrip().endswith("The quality of this image is good.</s>")

    blip = load_critic(tiny_models("blip2"))
    item = encode_dialogue(blip.encoder, _pair_dialogue(" first", COMPARE.instructions[1]), [image, image])
    assert item["pixel_values"].shape[0] == 1  # one side-by-side picture
    assert "side by side" in blip.tokenizer.decode(item["input_ids"][0])


def test_free_text_answers_are_labelled_whole(tiny_llava):
    critic = load_critic(tiny_llava)
    text = "The image is sharp and well exposed."
    item = encode_dialogue(
        critic.encoder,
        Dialogue("describe", "description", ("x",), DESCRIBE.instruction, text),
        [Image.new("RGB", (32, 32))],
    )
    labels = item["labels"][0]
    assert critic.tokenizer.decode(labels[labels != IGNORE]) == text + critic.tokenizer.eos_token
    prompt = critic.tokenizer.decode(item["input_ids"][0][labels == IGNORE])
    assert prompt.endswith("ASSISTANT: ") and DESCRIBE.task in prompt


def test_answer_must_start_with_the_prefix_scoring_puts_in_the_prompt(tiny_llava):
    critic = load_critic(tiny_llava)
    bad = Dialogue("quality", "quality", ("x.png",), QUALITY.instruction, "It is good.")
    with pytest.raises(VcriticError, match="must start with"):
        encode_dialogue(critic.encoder, bad, [Image.new("RGB", (32, 32))])


@pytest.mark.parametrize("family", family_params())
def test_answer_loss_equals_the_full_logits_loss(tiny_models, family):
    """Logits only at labelled positions give the same loss as transformers' own loss over full logits."""
    import torch

    from vcritic.training.trainable import answer_loss

    critic = load_critic(tiny_models(family))
    images = [Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("RGB", (30, 40), (30, 90, 200))]
    rating = Dialogue("quality", "quality", ("x",), "Rate it.", "The quality of this image is bad.")
    items = [
        encode_dialogue(critic.encoder, _pair_dialogue(" first"), images),
        encode_dialogue(critic.encoder, rating, images[:1]),
    ]
    if not critic.family.multi_image:
        items = items[1:] * 2
    batch = critic.encoder.collate(items)
    with torch.no_grad():
        ours = answer_loss(critic.model, dict(batch), torch.float32)
        logits = critic.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    shifted = logits[:, :-1].reshape(-1, logits.shape[-1])
    reference = torch.nn.functional.cross_entropy(shifted, batch["labels"][:, 1:].reshape(-1), ignore_index=IGNORE)
    assert torch.isfinite(ours)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


def test_collate_left_pads_labels_with_ignore(tiny_llava):
    critic = load_critic(tiny_llava)
    image = Image.new("RGB", (32, 32))
    short = Dialogue("quality", "quality", ("x",), "Rate it.", "The quality of this image is bad.")
    long = Dialogue("quality", "quality", ("x",), QUALITY.instructions[2], "The quality of this image is excellent.")
    batch = critic.encoder.collate([encode_dialogue(critic.encoder, d, [image]) for d in (short, long)])
    pad = batch["attention_mask"][0] == 0
    assert pad.any() and (batch["labels"][0][pad] == IGNORE).all()
    assert (batch["labels"][:, -1] == critic.tokenizer.eos_token_id).all()


# -- config ----------------------------------------------------------------------------------------------------------


def test_config_precedence_preset_then_file_then_flags(tmp_path):
    paper1, paper2 = load_config(1), load_config(2)
    assert (paper1.lr, paper1.min_lr, paper1.warmup_steps, paper1.steps) == (1e-3, 1e-4, 5000, 100_000)
    assert (paper2.lr, paper2.weight_decay, paper2.batch_size * paper2.grad_accum) == (1e-4, 0.05, 64)
    assert (paper1.lora_r, paper1.lora_alpha, paper1.lora_dropout, paper1.freeze_vision) == (16, 32, 0.1, True)
    assert paper1.train_modules == ["projector"]

    file = tmp_path / "mine.yaml"
    file.write_text("lr: 5e-4\nsteps: 300\nstages:\n  2:\n    steps: 40\n")
    one = load_config(1, str(file))
    assert (one.lr, one.steps, one.min_lr) == (5e-4, 300, 1e-4)  # the file over the preset, the rest the preset's
    assert load_config(2, str(file)).steps == 40  # a stage entry wins over the file's top level
    flags = load_config(2, str(file), {"steps": 7, "lr": None})
    assert (flags.steps, flags.lr) == (7, 5e-4)  # flags over the file; a flag left out changes nothing
    assert load_config(1, "tiny").train_modules == ["projector", "lm_head"]


def test_config_preset_name_wins_over_a_same_named_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()  # e.g. a model folder called tiny, next to the command
    tiny = load_config(1, "tiny")
    assert tiny.freeze_vision is False and tiny.lora_r == 32  # the preset, not the folder
    (tmp_path / "mine").mkdir()
    with pytest.raises(VcriticError, match="is a folder, not a YAML file"):
        load_config(1, "mine")


def test_config_refuses_unknown_keys_and_bad_values_naming_the_key(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("warmup_step: 10\n")
    with pytest.raises(VcriticError, match="'warmup_step'") as err:
        load_config(1, str(file))
    assert "did you mean 'warmup_steps'" in (err.value.hint or "")
    file.write_text("steps: many\n")
    with pytest.raises(VcriticError, match="'steps'"):
        load_config(1, str(file))
    with pytest.raises(VcriticError, match="'lora_dropout'"):
        load_config(1, None, {"lora_dropout": 1.5})
    with pytest.raises(VcriticError, match="'min_lr'"):
        TrainConfig(lr=1e-4, min_lr=1e-3)
    with pytest.raises(VcriticError, match="unknown config 'tiyn'") as err:
        load_config(1, "tiyn")
    assert "'tiny'" in err.value.hint
    file.write_text("stages:\n  4:\n    lr: 1\n")
    with pytest.raises(VcriticError, match="unknown stage"):
        load_config(1, str(file))
    for seed in (-1, 2**32):  # numpy and torch take 32-bit unsigned seeds: was a ValueError traceback mid-run
        with pytest.raises(VcriticError, match="'seed'"):
            load_config(1, "tiny", {"seed": seed})
    assert load_config(1, "tiny", {"seed": 2**32 - 1}).seed == 2**32 - 1
    with pytest.raises(VcriticError, match="'train_modules'"):  # nothing trains: was torch's empty-optimizer error
        TrainConfig(lora_r=0, train_modules=[])
    with pytest.raises(VcriticError, match="'eval_samples'"):
        TrainConfig(eval_samples=0)


def test_explicit_keys_are_the_flags_given_and_a_yaml_files_keys_not_a_presets(tmp_path):
    assert explicit_keys(1, "tiny", {"steps": 5, "lr": None}) == {"steps"}
    file = tmp_path / "mine.yaml"
    file.write_text("log_every: 3\nstages:\n  2: {eval_every: 4}\n")
    assert explicit_keys(2, str(file), {"seed": 1}) == {"log_every", "eval_every", "seed"}
    assert explicit_keys(1, str(file), None) == {"log_every"}


# -- data order and schedule -----------------------------------------------------------------------------------------


def test_task_batches_hold_one_task_are_full_and_depend_only_on_seed_and_epoch():
    tasks = ["relativity"] * 10 + ["quality"] * 5 + ["authenticity"] * 2
    sampler = TaskBatchSampler(tasks, batch_size=4, seed=1)
    first = list(sampler)
    assert len(first) == len(sampler) == 3 + 2 + 1
    for batch in first:
        assert len(batch) == 4 and len({tasks[i] for i in batch}) == 1
    assert {i for batch in first for i in batch} == set(range(len(tasks)))  # nothing left out
    assert list(TaskBatchSampler(tasks, 4, seed=1)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_learning_rate_warms_up_linearly_then_decays_to_min_lr():
    config = TrainConfig(steps=110, lr=1e-3, min_lr=1e-4, warmup_lr=1e-5, warmup_steps=10)
    assert lr_at(0, config) == pytest.approx(1e-5)
    assert lr_at(5, config) == pytest.approx((1e-5 + 1e-3) / 2)
    assert lr_at(10, config) == pytest.approx(1e-3)
    assert lr_at(60, config) == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_at(110, config) == pytest.approx(1e-4)


def test_adding_the_adapter_warns_the_user_of_nothing(tiny_llava):
    """peft reads transformers' deprecated `is_gradient_checkpointing`: that FutureWarning reached every
    `vcritic train` run's stderr."""
    import warnings

    from vcritic.training.trainable import attach_adapter

    net = load_critic(tiny_llava).model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        attach_adapter(net, TrainConfig())
    assert [str(w.message) for w in caught if "checkpointing" in str(w.message)] == []

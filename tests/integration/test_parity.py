"""Parity with the model cards: vcritic's MOS equals each card's own formula, computed independently.

For every read-out that the level-word presets use, on a tiny random model of every family: the card's few lines
(chat template with the card's prompt and generation prompt, the stem appended, first-token level ids, one forward,
softmax over the level logits, the weights) give the same number as ``Critic.score``, rescaled to 0-100, within
1e-5 in float32 on the CPU. Batching, padding (images of other sizes in the batch) and ``--tasks`` do not move it
(beyond float32 rounding: BATCH_TOLERANCE).

The cards below are copied from the model cards, not imported from vcritic: a wrong prompt, stem, word or weight in
:mod:`vcritic.model.judges` fails here.
"""

from __future__ import annotations

import functools

import pytest
from support.families import family_params

from vcritic.testing import FAMILIES

TOLERANCE = 1e-5
# Batched against alone: the same formula over other compute shapes. Idefics3/SmolVLM pad a batch's tile stacks with
# empty tiles, so their vision tower runs a larger batch and rounds differently in float32 (measured 1.1e-5 on the
# 0-100 scale); --reproducible makes it bitwise (tests/integration/test_fixed_shapes.py).
BATCH_TOLERANCE = 5e-5

# (user text, stem, how the stem joins the generation prompt, level words, weights, factor to vcritic's 0-100)
CARDS = {
    # https://huggingface.co/q-future/Q-ReAlign-Mini-0.8B, "Quick Run":
    # text = processor.apply_chat_template(messages, add_generation_prompt=True) + "The quality of the image is"
    # ids = [processor.tokenizer(" " + w, add_special_tokens=False).input_ids[0] for w in LEVELS]
    "q-realign": dict(
        user="How would you rate the quality of this image?",
        stem="The quality of the image is",
        join="as is",
        words=["excellent", "good", "fair", "poor", "bad"],
        weights=[1.0, 0.75, 0.5, 0.25, 0.0],
        factor=100.0,
    ),
    # VisualCritic's unified dialogue form, the read-out of vcritic's zero-shot presets and trained folders:
    # "[IQA_QUANT] instruction", the answer "The quality of this image is <level>.", levels 100 .. 0.
    "vcritic": dict(
        user="<IQA_QUANT> How would you rate the overall quality of this image?",
        stem="The quality of this image is",
        join="space unless the template ends in whitespace",
        words=["excellent", "good", "fair", "poor", "bad"],
        weights=[100.0, 75.0, 50.0, 25.0, 0.0],
        factor=1.0,
        # vcritic asks for a direct answer: a template that thinks by default (Qwen3.5) closes an empty think block.
        template_options={"enable_thinking": False},
    ),
}


@functools.cache
def _load(directory):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(directory)
    return processor, AutoModelForImageTextToText.from_pretrained(directory, dtype=torch.float32).eval()


def card_score(directory, card: dict, image) -> float:
    """The card's formula, in its own few lines: no vcritic prompt or read-out code."""
    import torch

    processor, model = _load(str(directory))
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": card["user"]}]}]
        template = str(processor.chat_template)
        options = {k: v for k, v in card.get("template_options", {}).items() if k in template}
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **options)
        if card["join"] != "as is" and not text[-1:].isspace():
            text += " "
    else:  # BLIP-family processors have no template: the paper's format, the image tokens prepended by the processor
        text = f"Human: <img1></img1>{card['user']} Assistant: "
    text += card["stem"]
    tokenizer = getattr(processor, "tokenizer", processor)
    ids = [tokenizer(" " + word, add_special_tokens=False).input_ids[0] for word in card["words"]]
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1, ids]
    probs = logits.float().softmax(-1)
    return float((probs * torch.tensor(card["weights"])).sum()) * card["factor"]


def _applies(spec_name: str, directory) -> bool:
    from transformers import AutoProcessor

    has_template = bool(getattr(AutoProcessor.from_pretrained(directory), "chat_template", None))
    return has_template or spec_name == "vcritic"


def _critic(tiny_models, family, spec_name):
    """The family's tiny checkpoint and its critic with the card's readout; skips where the card does not apply."""
    from vcritic.inference.loading import load_critic

    directory = tiny_models(family)
    if not _applies(spec_name, directory):
        pytest.skip("the card's formula needs a chat template; this family's processor has none")
    return directory, load_critic(directory, device="cpu", dtype="float32", readout=spec_name)


def _images(sample_images):
    return [sample_images[name].convert("RGB") for name in ("chelsea", "rocket", "astronaut")]


@pytest.mark.parametrize("spec_name", sorted(CARDS))
@pytest.mark.parametrize("family", family_params(FAMILIES))
def test_score_equals_the_cards_formula(family, spec_name, tiny_models, sample_images):
    directory, critic = _critic(tiny_models, family, spec_name)
    for image in _images(sample_images)[:2]:
        expected = card_score(directory, CARDS[spec_name], image)
        assert critic.score(image, tasks="mos").mos == pytest.approx(expected, abs=TOLERANCE)


@pytest.mark.parametrize("spec_name", sorted(CARDS))
@pytest.mark.parametrize("family", family_params(FAMILIES))
def test_batching_padding_and_tasks_do_not_move_the_score(family, spec_name, tiny_models, sample_images):
    _, critic = _critic(tiny_models, family, spec_name)
    images = _images(sample_images)  # three sizes: padded against each other in one batch
    alone = [critic.score(image, tasks="mos").mos for image in images]
    batched = [s.mos for s in critic.score(images, tasks="mos", batch_size=3)]
    every_task = [s.mos for s in critic.score(images, tasks="all", batch_size=3)]
    assert batched == pytest.approx(alone, abs=BATCH_TOLERANCE)
    assert every_task == pytest.approx(alone, abs=BATCH_TOLERANCE)
    assert len({round(x, 6) for x in alone}) > 1  # the images are told apart: the checks above can fail


def test_every_level_word_preset_is_covered_by_its_card():
    from vcritic.model.presets import PRESETS
    from vcritic.model.readout_specs import LEVELS_KIND

    for preset in PRESETS.values():
        spec = preset.spec
        if spec.kind != LEVELS_KIND:
            continue
        card = CARDS[spec.name]
        assert [w.strip() for w, _ in spec.levels] == card["words"], preset.name
        assert spec.stem == card["stem"], preset.name
        question = spec.quality_question()
        weights = [w * card["factor"] for w in card["weights"]]
        assert list(question.values) == pytest.approx(weights), preset.name
        assert spec.prompt in card["user"], preset.name

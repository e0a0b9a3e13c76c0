"""Prompts (the paper's Vicuna format, chat templates) and the next-token readout's arithmetic: answer words and
the expectation over them."""

from __future__ import annotations

import math

import pytest
import torch

from vcritic.errors import VcriticError
from vcritic.readout.next_token import answer_token_ids, expectation
from vcritic.readout.prompts import COMPARE, QUALITY, Question, render_prompt, vicuna_prompt
from vcritic.testing import LLAVA_TEMPLATE, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


# -- prompts ---------------------------------------------------------------------------------------------------------
def test_vicuna_prompt_is_the_papers_format():
    assert (
        vicuna_prompt("<IQA_QUANT> Rate it.", 1, "<image>")
        == "Human: <img1><image></img1><IQA_QUANT> Rate it. Assistant: "
    )
    assert vicuna_prompt("Which?", 2, None) == "Human: <img1></img1><img2></img2>Which? Assistant: "


class _TemplateProcessor:
    """Just enough of a processor to render a chat template (the real template machinery of transformers)."""

    def __init__(self, tokenizer, template):
        self.tokenizer = tokenizer
        self.chat_template = template

    def apply_chat_template(self, messages, **kwargs):
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, **kwargs)


def test_chat_template_prompt_has_identifier_images_and_answer_prefix(tokenizer):
    processor = _TemplateProcessor(tokenizer, LLAVA_TEMPLATE)
    text = render_prompt(processor, QUALITY, image_placeholder="<image>")
    assert text == f"USER: <image>\n<IQA_QUANT> {QUALITY.instruction} ASSISTANT: {QUALITY.answer_prefix}"
    pair = render_prompt(processor, COMPARE, image_placeholder="<image>")
    assert pair.count("<image>") == 2 and "<IQA" not in pair and pair.endswith(COMPARE.answer_prefix)


def test_processor_without_template_falls_back_to_vicuna(tokenizer):
    processor = _TemplateProcessor(tokenizer, None)
    assert render_prompt(processor, QUALITY, image_placeholder=None) == (
        f"Human: <img1></img1><IQA_QUANT> {QUALITY.instruction} Assistant: {QUALITY.answer_prefix}"
    )


# -- readout ---------------------------------------------------------------------------------------------------------
def test_answer_words_are_single_tokens_read_in_context(tokenizer):
    ids = answer_token_ids(tokenizer, QUALITY)
    assert ids == [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word)[0]) for word in QUALITY.words]
    assert len(set(ids)) == 5


def test_answer_words_sharing_a_first_token_are_refused(tokenizer):
    clash = Question("clash", "", ("q",), "It is", ((" excellent", 1.0), (" excellent!", 0.0)))
    with pytest.raises(VcriticError) as caught:
        answer_token_ids(tokenizer, clash, model="org/some-model")
    # The message names the model and both words, on one line.
    assert caught.value.message == (
        "the tokenizer of org/some-model splits the answer words 'excellent' and 'excellent!' for 'clash' into "
        "tokens that start the same, so they cannot be told apart"
    )


def test_expectation_of_uniform_and_certain_distributions():
    values = (100.0, 75.0, 50.0, 25.0, 0.0)
    logits = torch.full((2, 10), -5.0)
    logits[0, [1, 2, 3, 4, 5]] = 0.0  # uniform over the five levels
    logits[1, 2] = 80.0  # certain: the second level ("good")
    out = expectation(logits, [1, 2, 3, 4, 5], values)
    assert out.mean.tolist() == pytest.approx([50.0, 75.0])
    assert out.std[0].item() == pytest.approx(math.sqrt(1250.0))  # population std of 0,25,50,75,100
    assert out.std[1].item() == pytest.approx(0.0, abs=1e-3)
    assert out.probs.sum(dim=1).tolist() == pytest.approx([1.0, 1.0])


def test_expectation_ignores_logits_of_other_tokens():
    base = torch.zeros(1, 8)
    other = base.clone()
    other[0, 7] = 100.0  # a token outside the answer words
    a = expectation(base, [0, 1], (1.0, 0.0))
    b = expectation(other, [0, 1], (1.0, 0.0))
    assert a.mean.item() == b.mean.item() == 0.5

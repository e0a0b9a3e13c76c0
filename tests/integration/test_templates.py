"""Prompts follow each family's own chat template; Qwen3.5's read-out comes after the empty thinking block its
template writes for a direct answer."""

from __future__ import annotations

import pytest
from support.families import family_params

from vcritic.readout.prompts import CHAT, QUALITY, render_prompt


@pytest.mark.parametrize("family", family_params(("qwen3_5",)))
def test_qwen3_5_reads_out_after_the_templates_non_thinking_generation_prompt(tiny_models, family):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_models(family))
    prompt = render_prompt(processor, QUALITY, image_placeholder=processor.image_token)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}]
    thinking = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert thinking.endswith("<|im_start|>assistant\n<think>\n")  # the template's default: it would reason first
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n" + QUALITY.answer_prefix)
    # Earlier answers are rendered without the block, as the template renders history.
    chat = render_prompt(processor, CHAT, image_placeholder=processor.image_token, history=[("Sharp?", "Yes.")])
    assert "<|im_start|>assistant\nYes.<|im_end|>" in chat


@pytest.mark.parametrize("family", family_params(("qwen3_vl", "idefics3")))
def test_templates_without_a_thinking_switch_do_not_get_one(tiny_models, family):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_models(family))
    prompt = render_prompt(processor, QUALITY, image_placeholder=processor.image_token)
    assert "<think>" not in prompt and prompt.endswith(QUALITY.answer_prefix)

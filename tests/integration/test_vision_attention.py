"""The Qwen-VL vision towers' packed attention as a few batched SDPA calls (vcritic.model.vision_attention): exactly the
stock per-segment path, forward and backward, with one call per distinct segment length."""

from __future__ import annotations

from itertools import pairwise

import pytest
from PIL import Image
from support.families import family_params

from vcritic.inference.loading import load_critic, load_model
from vcritic.model.compat import attention_name
from vcritic.model.vision_attention import NAME, grouped_attention, use_for_vision
from vcritic.testing import SDPACounter

QWEN = family_params(("qwen2_vl", "qwen2_5_vl"))
# Different sizes and aspect ratios (at --max-pixels 112*140): image grids of 8x10, 6x8, 2x2 and 10x6 patches, so
# images, and Qwen2.5-VL's 4x4-patch windows (whole and cut at the edges), come in several lengths; two sizes twice,
# so Qwen2-VL's per-image segments also group.
SIZES = [(140, 112), (112, 84), (28, 28), (84, 140), (140, 112), (28, 28)]
MAX_PIXELS = 112 * 140


def _images():
    import numpy as np

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]


def _per_segment(q, k, v, bounds, scale):
    """The reference: one SDPA call per segment, as transformers' non-flash path does."""
    import torch
    import torch.nn.functional as F

    parts = [F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], scale=scale)
             for a, b in pairwise(bounds)]  # fmt: skip
    return torch.cat(parts, dim=2).transpose(1, 2)


class _Module:
    """What the attention function reads from the layer that calls it."""

    is_causal = False
    training = False


@pytest.mark.parametrize(
    "bounds",
    [
        [0, 64],  # one segment
        [0, 16, 32, 48],  # equal lengths, contiguous: no gather at all
        [0, 16, 24, 40, 44, 60, 61, 70],  # lengths interleaved: gathered and put back in order
    ],
)
def test_grouped_attention_equals_one_call_per_segment_with_gradients(bounds):
    import torch

    torch.manual_seed(0)
    tokens = bounds[-1]
    q, k, v = (torch.randn(1, 3, tokens, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    cu = torch.tensor(bounds, dtype=torch.int32)
    ours, weights = grouped_attention(_Module(), q, k, v, scaling=0.3, cu_seq_lens_q=cu, cu_seq_lens_k=cu)
    reference = _per_segment(q, k, v, bounds, 0.3)
    assert weights is None and ours.shape == (1, tokens, 3, 8)  # the flash layout: (batch, tokens, heads, dim)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    upstream = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, (q, k, v), upstream)
    expected = torch.autograd.grad(reference, (q, k, v), upstream)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_without_cu_seqlens_the_whole_sequence_is_one_segment():
    import torch
    import torch.nn.functional as F

    q, k, v = torch.randn(3, 1, 2, 10, 4).unbind(0)
    ours, _ = grouped_attention(_Module(), q, k, v, scaling=0.5)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, scale=0.5).transpose(1, 2))


def test_grouped_attention_refuses_what_it_cannot_compute():
    import torch

    q = torch.zeros(1, 2, 8, 4)
    cu = torch.tensor([0, 4, 8])
    with pytest.raises(ValueError, match="attention mask"):
        grouped_attention(_Module(), q, q, q, attention_mask=torch.zeros(1, 1, 8, 8), cu_seq_lens_q=cu)
    with pytest.raises(ValueError, match="cover 6 tokens"):
        grouped_attention(_Module(), q, q, q, cu_seq_lens_q=torch.tensor([0, 2, 6]))


def _segments_per_layer(model, run):
    """The cu_seqlens each vision attention layer receives during ``run()``."""
    seen = []
    blocks = [m for name, m in model.named_modules() if name.endswith(".attn") and "visual" in name]
    handles = [b.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["cu_seqlens"].tolist()), with_kwargs=True)
               for b in blocks]  # fmt: skip
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return seen


@pytest.mark.parametrize("family", QWEN)
def test_vision_tower_and_scores_equal_the_stock_path_with_one_call_per_length(tiny_models, family):
    """Loaded as users load it: the vision tower gets the grouped function, the language model keeps SDPA; the
    tower's output and the scores equal the stock per-segment SDPA path, and the grouped path makes one SDPA call
    per distinct segment length and layer instead of one per segment."""
    import torch

    critic = load_critic(tiny_models(family), max_pixels=MAX_PIXELS)
    model, images = critic.model, _images()
    assert attention_name(model.config.vision_config) == NAME
    assert attention_name(model.config.text_config) == "sdpa"
    assert attention_name(model.model.language_model.config) == "sdpa"
    pixels = critic.processor.image_processor(images=images, return_tensors="pt")
    assert len({tuple(g) for g in pixels["image_grid_thw"].tolist()}) == 4

    def tower():
        with torch.no_grad():
            return model.model.visual(pixels["pixel_values"], grid_thw=pixels["image_grid_thw"]).pooler_output

    segments = _segments_per_layer(model, tower)
    with SDPACounter() as grouped_calls:
        grouped = tower()
    grouped_scores = [s.mos for s in critic.score(images, batch_size=3)]

    assert use_for_vision(model, "sdpa")
    with SDPACounter() as stock_calls:
        stock = tower()
    stock_scores = [s.mos for s in critic.score(images, batch_size=3)]

    torch.testing.assert_close(grouped, stock, rtol=0, atol=1e-5)
    assert grouped_scores == pytest.approx(stock_scores, abs=1e-5)
    lengths = [{b - a for a, b in pairwise(cu)} for cu in segments]
    assert all(len(set_) > 1 for set_ in lengths)  # several lengths in every layer, so the grouping is exercised
    if family == "qwen2_5_vl":  # windows split the images: more segments than images in the windowed layer
        assert max(len(cu) - 1 for cu in segments) > len(SIZES)
    assert grouped_calls.calls == sum(len(set_) for set_ in lengths)
    assert stock_calls.calls == sum(len(cu) - 1 for cu in segments) > grouped_calls.calls


@pytest.mark.parametrize("family", QWEN)
def test_training_gradients_equal_the_stock_path(tiny_models, family):
    """A training step's loss and every parameter's gradient (vision tower included) are those of stock SDPA."""
    import torch

    from vcritic.data.dialogues import Dialogue
    from vcritic.readout.prompts import QUALITY
    from vcritic.training.collate import encode_dialogue
    from vcritic.training.trainable import answer_loss

    critic = load_critic(tiny_models(family), max_pixels=MAX_PIXELS)  # for its encoder
    net = load_model(tiny_models(family), dtype=torch.float32, max_pixels=MAX_PIXELS).model
    net.train()  # as the training loop sets it
    assert attention_name(net.config.vision_config) == NAME
    answers = [QUALITY.answer(word) for word in ("bad", "good", "fair", "poor")]
    batch = critic.encoder.collate(
        [
            encode_dialogue(
                critic.encoder, Dialogue("quality", "quality", ("x",), QUALITY.instruction, answer), [image]
            )
            for answer, image in zip(answers, _images()[:4], strict=True)
        ]  # fmt: skip
    )

    def step():
        net.zero_grad()
        loss = answer_loss(net, dict(batch), torch.float32)
        loss.backward()
        return loss.item(), {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}

    loss, grads = step()
    use_for_vision(net, "sdpa")
    stock_loss, stock_grads = step()
    assert loss == pytest.approx(stock_loss, abs=1e-6)
    assert grads.keys() == stock_grads.keys() and any(".visual.blocks.0.attn.qkv" in name for name in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, stock_grads[name], rtol=0, atol=1e-5, msg=name)


def test_other_families_keep_their_attention(tiny_llava):
    critic = load_critic(tiny_llava)
    assert not use_for_vision(critic.model)
    implementations = {attention_name(critic.model.config.vision_config),
                       attention_name(critic.model.config.text_config)}  # fmt: skip
    assert implementations == {"sdpa"}

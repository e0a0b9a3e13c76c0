"""Variable-length attention for the Qwen2-VL / Qwen2.5-VL vision towers as a few batched SDPA calls.

Their vision attention packs every image (full-attention layers) or every 112 px window (windowed layers) into one
sequence described by ``cu_seqlens``. With ``sdpa`` or ``eager`` transformers splits it and calls attention once
per segment, with a host sync in every layer: a batch of 32 images at 448 px makes ~512 tiny calls per windowed
layer. Only an implementation whose name contains "flash" is handed ``cu_seqlens`` in one call, and flash-attn is
not something we can count on. :func:`grouped_attention` takes that call and computes every segment exactly,
grouping segments of equal length into one ``scaled_dot_product_attention`` call each (gather, attend on
``(segments, heads, length, head_dim)``, put back). It is registered through transformers' public
``AttentionInterface`` and set on the vision sub-config only (:func:`use_for_vision`); the language model keeps
its own attention.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

# The name must contain "flash": that is the test (`is_flash_attention_requested`) by which Qwen2-VL/2.5-VL's vision
# attention passes the packed sequence with cu_seqlens in one call instead of splitting it. It must not start with
# "flash_attention_" (transformers would check for the flash-attn package), nor contain "sdpa" or "flex" (other
# checks); it is never set on a top-level config, where any "flash" name makes transformers look for a hub kernel.
NAME = "vcritic_grouped_flash"
# model_type -> the families whose vision attention takes cu_seqlens this way (transformers 5.5.4 to 5.25 at least;
# vcritic.model.compat checks it on the installed release).
FAMILIES = frozenset({"qwen2_vl", "qwen2_5_vl"})
_CACHE_SIZE = 8  # plans kept: the model builds two cu_seqlens tensors per forward (images and windows)


@dataclass
class _Group:
    """Segments of one length: ``count`` of them, a contiguous run from ``start`` or gathered by ``index``."""

    length: int
    count: int
    start: int
    index: Any  # (count, length) token positions, or None for a contiguous run


@dataclass
class _Plan:
    groups: list[_Group]
    inverse: Any  # puts the groups' concatenated outputs back in token order; None when they already are
    total: int


_plans: list[tuple[weakref.ref, _Plan]] = []


def _plan(cu_seqlens) -> _Plan:
    """The grouping of ``cu_seqlens``, computed once per tensor object: the model passes the same tensor to every
    layer of a kind, so this is one host sync per kind and forward instead of one per layer."""
    import torch

    for ref, plan in _plans:
        if ref() is cu_seqlens:
            return plan
    bounds = cu_seqlens.tolist()
    starts: dict[int, list[int]] = {}
    for begin, end in pairwise(bounds):
        if end > begin:
            starts.setdefault(end - begin, []).append(begin)
    groups, order = [], []
    for length, firsts in starts.items():
        positions = (torch.tensor(firsts)[:, None] + torch.arange(length)).flatten()
        contiguous = all(b - a == length for a, b in pairwise(firsts))
        index = None if contiguous else positions.view(len(firsts), length).to(cu_seqlens.device)
        groups.append(_Group(length, len(firsts), firsts[0], index))
        order.append(positions)
    total = bounds[-1]
    order = torch.cat(order) if order else torch.empty(0, dtype=torch.long)
    in_order = torch.equal(order, torch.arange(total))
    plan = _Plan(groups, None if in_order else torch.argsort(order).to(cu_seqlens.device), total)
    _plans[:] = [(ref, p) for ref, p in _plans if ref() is not None][-(_CACHE_SIZE - 1) :]
    _plans.append((weakref.ref(cu_seqlens), plan))
    return plan


def grouped_attention(
    module,
    query,
    key,
    value,
    attention_mask=None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    cu_seq_lens_q=None,
    cu_seq_lens_k=None,
    **kwargs,
):
    """Attention over the packed segments of ``cu_seq_lens_q``, one SDPA call per distinct segment length.

    ``query``/``key``/``value`` are ``(1, heads, tokens, head_dim)``; returns ``((1, tokens, heads, head_dim),
    None)``, the layout of transformers' flash path. Without ``cu_seq_lens_q`` (a model that does not pack), the
    whole sequence is one segment, as with ``sdpa``."""
    import torch
    import torch.nn.functional as F

    if attention_mask is not None:
        raise ValueError(f"{NAME} handles packed segments without an attention mask (use it for vision towers only)")
    if (
        cu_seq_lens_k is not None
        and cu_seq_lens_k is not cu_seq_lens_q
        and not torch.equal(cu_seq_lens_k, cu_seq_lens_q)
    ):
        raise ValueError(f"{NAME} needs the same segments for queries and keys")
    if key.shape[1] != query.shape[1]:  # grouped-query heads
        key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
        value = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
    causal = bool(module.is_causal if is_causal is None else is_causal)
    dropout = dropout if module.training else 0.0
    # Token-major views, (tokens, heads, head_dim): a run of equal segments is then a reshape, not a copy.
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
    tokens = q.shape[0]
    plan = _Plan([_Group(tokens, 1, 0, None)], None, tokens) if cu_seq_lens_q is None else _plan(cu_seq_lens_q)
    if plan.total != tokens:
        raise ValueError(f"cu_seqlens cover {plan.total} tokens, the input has {tokens}")
    outputs = []
    for group in plan.groups:
        if group.index is None:
            end = group.start + group.count * group.length
            parts = [t[group.start : end].reshape(group.count, group.length, *t.shape[1:]) for t in (q, k, v)]
        else:
            parts = [t[group.index] for t in (q, k, v)]
        gq, gk, gv = (t.transpose(1, 2) for t in parts)  # (segments, heads, length, head_dim)
        out = F.scaled_dot_product_attention(
            gq, gk, gv, dropout_p=dropout, scale=scaling, is_causal=causal and group.length > 1
        )
        outputs.append(out.transpose(1, 2).reshape(group.count * group.length, *q.shape[1:]))
    output = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    if plan.inverse is not None:
        output = output[plan.inverse]
    return output.unsqueeze(0), None


def register() -> bool:
    """Make :data:`NAME` a valid ``attn_implementation`` (idempotent); False where this transformers cannot."""
    from vcritic.model.compat import register_attention

    return register_attention(NAME, grouped_attention)


def use_for_vision(model, implementation: str = NAME) -> bool:
    """Set ``implementation`` on the vision tower of a Qwen2-VL / Qwen2.5-VL ``model`` (other parts keep theirs);
    returns whether ``model`` is one of those families. ``implementation="sdpa"`` restores the stock per-segment
    path, which the tower also keeps, with a note, where this transformers release cannot take :data:`NAME`
    (:func:`vcritic.model.compat.set_vision_attention`)."""
    config = model.config
    if getattr(config, "model_type", None) not in FAMILIES or "vision_config" not in config.sub_configs:
        return False
    from vcritic.model.compat import set_vision_attention

    grouped = implementation == NAME
    if grouped and not register():
        implementation, grouped = "sdpa", False
    set_vision_attention(model, implementation, packed=grouped)
    return True

"""The trainable model: which parts train (LoRA on the language model, named modules in full) and the answer loss.

With LoRA (``lora_r`` > 0, the paper's recipe) everything that trains lives in one peft adapter: LoRA layers, plus
modules trained in full through peft's ``modules_to_save`` (the projector, ``lm_head``, the vision tower when it
is not frozen). ``save_pretrained`` writes all trained weights to one safetensors file, and
``PeftModel.from_pretrained`` in :mod:`vcritic.inference.loading` restores them. With ``lora_r: 0`` the named modules
(``language_model`` for full fine-tuning of the decoder) train in full without peft and the output is a whole model.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any

from vcritic.errors import VcriticError
from vcritic.training.collate import IGNORE

if TYPE_CHECKING:
    import torch

    from vcritic.training.config import TrainConfig

# Names the config may use for a part of any family, and the module each family calls it.
MODULE_ALIASES = {
    # LLaVA (and LLaVA-OneVision), BLIP-2/InstructBLIP, Qwen-VL (Qwen3-VL/3.5 too), Idefics3/SmolVLM
    "projector": ("multi_modal_projector", "language_projection", "merger", "connector"),
    "vision": ("vision_tower", "vision_model", "visual"),
    "lm_head": ("lm_head",),
}
FULL_ONLY = "language_model"  # trained in full only without LoRA (LoRA adapts the same weights)


def language_model_path(net) -> str:
    """The module path of the language model (LoRA goes there, never into the vision tower)."""
    inner = getattr(net, "model", None)
    # Idefics3/SmolVLM call it text_model.
    candidates = [getattr(m, name, None) for m in (net, inner) for name in ("language_model", "text_model")]
    for name, module in net.named_modules():
        if any(module is lm for lm in candidates if lm is not None):
            return name
    raise VcriticError(
        f"cannot find the language model of this {net.config.model_type} model",
        hint="vcritic trains LLaVA, BLIP-2, InstructBLIP, Qwen-VL (2, 2.5, 3, 3.5) and Idefics3/SmolVLM layouts",
    )


def resolve_modules(net, names: list[str]) -> list[str]:
    """Module paths for config names (aliases or module names); nested entries are dropped (the outer one trains)."""
    paths = [name for name, _ in net.named_modules() if name]
    found: list[str] = []
    for name in names:
        if name == FULL_ONLY:
            found.append(language_model_path(net))
            continue
        candidates = MODULE_ALIASES.get(name, (name,))
        matches = [p for p in paths if any(p == c or p.endswith("." + c) for c in candidates)]
        if not matches:
            raise VcriticError(
                f"config key 'train_modules': no module {name!r} in this {net.config.model_type} model",
                hint=f"use {', '.join(MODULE_ALIASES)}, {FULL_ONLY} or a module name of the model",
            )
        found.append(min(matches, key=len))  # the outermost match, e.g. model.visual.merger
    unique = sorted(set(found), key=found.index)
    return [p for p in unique if not any(p.startswith(q + ".") for q in unique if q != p)]


def attach_adapter(net, config: TrainConfig):
    """Freeze ``net``, add LoRA to its language model and make the configured modules trainable (a PeftModel);
    with ``lora_r`` 0, only make the configured modules trainable (the model itself)."""
    from peft import LoraConfig, get_peft_model

    net.requires_grad_(False)
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input that requires grad (the frozen embeddings give none).
        from vcritic.model.compat import enable_gradient_checkpointing

        enable_gradient_checkpointing(net, use_reentrant=False)
    names = list(config.train_modules) + ([] if config.freeze_vision else ["vision"])
    if config.lora_r == 0:
        modules = dict(net.named_modules())
        for path in resolve_modules(net, names):
            modules[path].requires_grad_(True)
        _float32_trainable(net)
        return net
    if FULL_ONLY in names:
        raise VcriticError(
            f"config key 'train_modules': {FULL_ONLY} trains in full only without LoRA",
            hint="set lora_r: 0 to fine-tune the language model in full, or drop it from train_modules",
        )
    lm = re.escape(language_model_path(net))
    layers = "|".join(re.escape(t) for t in config.lora_targets)
    peft_config = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=rf"^{lm}\..*\.({layers})$",
        modules_to_save=resolve_modules(net, names) or None,
        bias="none",
    )
    try:
        with warnings.catch_warnings():
            # peft reads transformers' deprecated `is_gradient_checkpointing`; not the user's concern.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = get_peft_model(net, peft_config)
    except ValueError as err:
        raise VcriticError(
            f"cannot add LoRA: {str(err).splitlines()[0]}",
            hint="config key 'lora_targets' must name linear layers of the language model",
        ) from None
    _float32_trainable(model)
    return model


def _float32_trainable(model) -> None:
    """Trainable weights stay float32 (the optimizer state too); the frozen base may be bfloat16."""
    import torch

    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()


def trainable_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def answer_loss(model, batch: dict[str, Any], dtype) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens.

    Left padding puts every answer at the end of its row, so logits are computed only for the last
    (longest answer + 1) positions (``logits_to_keep``) instead of a [batch, length, vocab] tensor.
    """
    import torch
    import torch.nn.functional as F

    inputs = {k: (v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in batch.items()}
    labels = inputs.pop("labels")
    keep = min(int((labels != IGNORE).sum(dim=1).max()) + 1, labels.shape[1])
    logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits[:, -keep:, :]
    targets = labels[:, -keep:][:, 1:]
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )

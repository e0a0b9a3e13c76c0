"""The one function that loads every model: :func:`load_critic`.

Any checkpoint that transformers loads natively as an image-text-to-text model works (LLaVA, BLIP-2,
InstructBLIP, Qwen2-VL/2.5-VL, Idefics3/SmolVLM, ...), optionally with a peft LoRA adapter on top. vcritic's
own trained checkpoints are a directory with a ``vcritic.json`` naming the base model, plus the adapter (and,
where training changed it, the processor)::

    {"format": 1, "base_model": "Qwen/Qwen2.5-VL-7B-Instruct", "base_revision": null, "adapter": ".",
     "trained_on": ["koniq10k", ...], "description": "..."}

A later training stage lists every adapter of the chain instead, merged in order:
``"adapters": ["previous/1", "."]``. A model trained in full (no LoRA) holds its own weights: ``"base_model": "."``,
``"adapters": []``.

Device, dtype and attention implementation are decided here and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcritic.errors import VcriticError

MANIFEST = "vcritic.json"


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise VcriticError(f"{path} is not valid JSON: {err}", hint="fix or remove the file") from None
    if not isinstance(manifest, dict) or "base_model" not in manifest:
        raise VcriticError(f"{path} has no 'base_model'", hint="it must name the base checkpoint the adapter is for")
    return manifest


def _has_processor_files(directory: Path) -> bool:
    return any(
        (directory / name).is_file()
        for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
    )


def manifest_adapters(manifest: dict[str, Any]) -> list[str]:
    """The adapters of a trained directory, in the order they are merged: a stage-N+1 model lists its earlier
    stages' adapters (copied into its own folder) before its own, so it loads alone."""
    adapters = manifest.get("adapters")
    if adapters is None:
        return [manifest.get("adapter", ".")]
    if not isinstance(adapters, list) or not all(isinstance(a, str) for a in adapters):
        raise VcriticError(f"{MANIFEST}: 'adapters' must be a list of folders", hint='e.g. ["previous/1", "."]')
    return adapters


@dataclass
class Loaded:
    """A model and its processor as loaded from a checkpoint, before any decision about training or scoring."""

    model: Any
    processor: Any
    manifest: dict[str, Any] | None
    directory: Path  # where ``model`` resolved to


def load_model(
    model: str | Path | None,
    *,
    dtype,
    adapter: str | Path | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    merge_adapter: bool = True,
) -> Loaded:
    """Resolve ``model`` (a preset, hub id, folder or vcritic trained directory), load it in ``dtype`` with its
    processor, and apply its adapters in order (all merged, except the last when ``merge_adapter`` is False).

    Scoring (:func:`load_critic`) and training both load through here; the model is left on the CPU in train
    mode with gradients enabled, as ``from_pretrained`` returns it.
    """
    from vcritic.hub import resolve_model

    if model is None or str(model) == "":
        model = _default_model()  # downloaded on first use, with a notice
    directory = resolve_model(str(model), revision, allow_pickle=allow_pickle)
    manifest = read_manifest(directory)
    base_dir, adapter_dirs, processor_dir = directory, [], directory
    if manifest is not None:
        if manifest["base_model"] == ".":  # a whole model trained in full: the weights are in this folder
            base_dir = directory
        else:
            base = str(manifest["base_model"])
            base_dir = resolve_model(base, manifest.get("base_revision"), allow_pickle=allow_pickle)
        adapter_dirs = [directory / name for name in manifest_adapters(manifest)]
        processor_dir = directory if _has_processor_files(directory) else base_dir
    if adapter is not None:
        adapter_dir = Path(adapter).expanduser()
        if not (adapter_dir / "adapter_config.json").is_file():
            raise VcriticError(
                f"{adapter_dir} is not a peft adapter directory (no adapter_config.json)",
                hint="pass the folder that peft's save_pretrained wrote",
            )
        adapter_dirs.append(adapter_dir)

    processor = _load_processor(processor_dir, trust_remote_code)
    net = _load_model(base_dir, dtype, trust_remote_code, allow_pickle)
    for i, adapter_dir in enumerate(adapter_dirs):
        net = _apply_adapter(net, adapter_dir, merge_adapter or i < len(adapter_dirs) - 1)
    return Loaded(net, processor, manifest, directory)


def load_critic(
    model: str | Path | None,
    *,
    adapter: str | Path | None = None,
    revision: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    merge_adapter: bool = True,
):
    """Load ``model`` (+ optional LoRA ``adapter``) for scoring: eval mode, no gradients, on ``device``.

    ``device``/``dtype`` default to CUDA+bfloat16 when a GPU is there, CPU+float32 otherwise (see
    :mod:`vcritic.runtime`). The adapter is merged into the weights for speed unless ``merge_adapter`` is False.
    """
    from vcritic.runtime import resolve_device, resolve_dtype

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    loaded = load_model(
        model,
        dtype=torch_dtype,
        adapter=adapter,
        revision=revision,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
        merge_adapter=merge_adapter,
    )
    net = loaded.model
    net.to(torch_device)
    net.eval()
    net.requires_grad_(False)

    from vcritic.critic import Critic, Family

    return Critic(
        net,
        loaded.processor,
        family=Family.detect(net.config.model_type, loaded.processor),
        device=torch_device,
        dtype=torch_dtype,
        source=str(model) if model else _default_model(),
        info=loaded.manifest,
    )


def _default_model() -> str:
    from vcritic.presets import DEFAULT_PRESET

    return DEFAULT_PRESET


def _load_processor(directory: Path, trust_remote_code: bool):
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(directory, trust_remote_code=trust_remote_code)
    except ImportError as err:
        raise VcriticError(
            f"the processor of {directory} needs a missing package: {err}".splitlines()[0],
            hint="install the package it names (Qwen-VL and SmolVLM processors need torchvision)",
        ) from None
    except (OSError, ValueError, KeyError) as err:
        raise VcriticError(
            f"could not load the processor from {directory}: {err}".splitlines()[0],
            hint="the folder needs the processor/tokenizer files saved by save_pretrained",
        ) from None
    if not hasattr(processor, "image_processor"):
        raise VcriticError(
            f"{directory} has a text-only tokenizer, not an image processor",
            hint="vcritic needs an image-text-to-text checkpoint (LLaVA, BLIP-2, Qwen2.5-VL, ...)",
        )
    return processor


def _load_model(directory: Path, dtype, trust_remote_code: bool, allow_pickle: bool):
    from transformers import AutoModelForImageTextToText
    from transformers.utils import logging as hf_logging

    # The CLI shows its own "Loading model" status; transformers' per-tensor bar would only add noise.
    hf_logging.disable_progress_bar()

    kwargs = dict(dtype=dtype, trust_remote_code=trust_remote_code)
    if not allow_pickle:
        kwargs["use_safetensors"] = True  # never unpickle weights unless asked: a .bin can run code
    try:
        try:
            return AutoModelForImageTextToText.from_pretrained(directory, attn_implementation="sdpa", **kwargs)
        except ValueError as err:
            if "sdpa" not in str(err).lower() and "scaled_dot_product" not in str(err).lower():
                raise
            return AutoModelForImageTextToText.from_pretrained(directory, attn_implementation="eager", **kwargs)
    except ValueError as err:
        text = str(err)
        if "Unrecognized configuration class" in text or "Unrecognized model" in text:
            raise VcriticError(
                f"{directory} is not an image-text-to-text model that transformers knows",
                hint="use a LLaVA, BLIP-2, InstructBLIP, Qwen2-VL/2.5-VL or Idefics3 checkpoint"
                " (or --trust-remote-code for a repo you trust)",
            ) from None
        raise VcriticError(f"could not load the model from {directory}: {text.splitlines()[0]}") from None
    except OSError as err:
        text = str(err)
        if not allow_pickle and any(directory.glob("*.bin")) and not any(directory.glob("*.safetensors")):
            raise VcriticError(
                f"{directory} has only pickled .bin weights, which can run code when loaded",
                hint="convert them to safetensors, or pass --allow-pickle if you trust the source",
            ) from None
        raise VcriticError(
            f"could not load the model from {directory}: {text.splitlines()[0]}",
            hint="the folder needs config.json and *.safetensors weights",
        ) from None


def _apply_adapter(model, adapter_dir: Path, merge: bool):
    from peft import PeftModel

    if not (adapter_dir / "adapter_config.json").is_file():
        raise VcriticError(
            f"{adapter_dir} has no adapter_config.json",
            hint="the vcritic.json 'adapter' entry must point at it",
        )
    try:
        model = PeftModel.from_pretrained(model, adapter_dir)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise VcriticError(
            f"could not apply the adapter in {adapter_dir}: {str(err).splitlines()[0]}",
            hint="check that the adapter was trained on this base model",
        ) from None
    return model.merge_and_unload() if merge else model

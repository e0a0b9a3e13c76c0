"""The one function that loads every model: :func:`load_critic`.

Any checkpoint that transformers loads natively as an image-text-to-text model works (LLaVA, BLIP-2,
InstructBLIP, Qwen2-VL/2.5-VL, Idefics3/SmolVLM, ...), optionally with a peft LoRA adapter on top. vcritic's
own trained checkpoints are a directory with a ``vcritic.json`` naming the base model and the adapters merged on top
of it (its keys: :mod:`vcritic.model.vcritic_json`).

Device, dtype and attention implementation are decided here and nowhere else.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcritic.errors import VcriticError
from vcritic.model.vcritic_json import WHOLE_MODEL, manifest_adapter_dirs, manifest_base, read_manifest


def _has_processor_files(directory: Path) -> bool:
    return any(
        (directory / name).is_file()
        for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
    )


@dataclass
class Loaded:
    """A model and its processor as loaded from a checkpoint, before any decision about training or scoring."""

    model: Any
    processor: Any
    manifest: dict[str, Any] | None
    directory: Path  # where ``model`` resolved to
    resolution: Any = None  # vcritic.model.resolution.Resolution: how large images are seen, and why


def load_model(
    model: str | Path | None,
    *,
    dtype,
    adapter: str | Path | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    merge_adapter: bool = True,
    max_pixels: int | None = None,
    image_size: int | None = None,
    device_map: str | dict | None = None,
) -> Loaded:
    """Resolve ``model`` (a preset, hub id, folder or vcritic trained directory), load it in ``dtype`` with its
    processor, and apply its adapters in order (all merged, except the last when ``merge_adapter`` is False).

    Scoring (:func:`load_critic`) and training both load through here; the model is left where ``device_map``
    puts it (the CPU without one) with gradients enabled, as ``from_pretrained`` returns it.
    ``max_pixels``/``image_size`` set how large images are seen (:mod:`vcritic.model.resolution`); left out, a trained
    directory's ``vcritic.json`` says (what it was trained at), else the checkpoint's own resizing. ``device_map``
    is passed to ``from_pretrained``: "auto" spreads a model too large for one GPU over all visible ones,
    ``{"": device}`` loads it straight onto one device (adapters follow it there).
    """
    from vcritic.model.hub import resolve_model

    if model is None or str(model) == "":
        model = _default_model()  # downloaded on first use, with a notice
    directory = resolve_model(str(model), revision, allow_pickle=allow_pickle)
    manifest = read_manifest(directory)
    base_dir, adapter_dirs, processor_dir = directory, [], directory
    if manifest is not None:
        base, base_revision = manifest_base(manifest)
        # A whole model trained in full holds its weights in this folder.
        base_dir = directory if base == WHOLE_MODEL else resolve_model(base, base_revision, allow_pickle=allow_pickle)
        adapter_dirs = manifest_adapter_dirs(directory, manifest)
        processor_dir = directory if _has_processor_files(directory) else base_dir
    if adapter is not None:
        adapter_dir = Path(adapter).expanduser()
        if not (adapter_dir / "adapter_config.json").is_file():
            raise VcriticError(
                f"{adapter_dir} is not a peft adapter directory (no adapter_config.json)",
                hint="pass the folder that peft's save_pretrained wrote",
            )
        adapter_dirs.append(adapter_dir)
    for adapter_dir in adapter_dirs:  # before the weights: a damaged config is one line, not a traceback from peft
        _adapter_config(adapter_dir)

    processor = _load_processor(processor_dir, trust_remote_code)
    from vcritic.model.resolution import chosen_resolution, configure_resolution

    resolution = chosen_resolution(max_pixels, image_size, manifest)
    # Before the weights: fail fast.
    configure_resolution(processor, max_pixels=resolution.max_pixels, image_size=resolution.image_size)
    net = _load_model(base_dir, dtype, trust_remote_code, allow_pickle, device_map)
    for i, adapter_dir in enumerate(adapter_dirs):
        net = _apply_adapter(net, adapter_dir, merge_adapter or i < len(adapter_dirs) - 1, allow_pickle)
    return Loaded(net, processor, manifest, directory, resolution)


def load_critic(
    model: str | Path | None = None,
    *,
    adapter: str | Path | None = None,
    revision: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    merge_adapter: bool = True,
    max_pixels: int | None = None,
    image_size: int | None = None,
    device_map: str | None = None,
    fixed_shapes: bool | int = False,
    readout: str | None = None,
):
    """Load ``model`` (+ optional LoRA ``adapter``) for scoring: eval mode, no gradients, on ``device``.

    ``model`` is a local directory, a preset name or a hub repo id; left out, the CLI's default ($VCRITIC_MODEL,
    else :func:`default_model`: Q-ReAlign Lite with CUDA, Mini without).

    ``readout``: how MOS is asked and read out, a :mod:`vcritic.model.judges` read-out or preset name (``q-realign``,
    ``q-realign-mini-0.8b``), for a local copy or fine-tune of a judge; default: what a trained folder's
    ``vcritic.json`` records, else the preset's own, else vcritic's prompts (``Critic.judge``).

    ``device``/``dtype`` default to CUDA+bfloat16 when a GPU is there, CPU+float32 otherwise (see
    :mod:`vcritic.model.runtime`). The adapter is merged into the weights for speed unless ``merge_adapter`` is False.
    ``max_pixels``/``image_size``: how large images are seen (:mod:`vcritic.model.resolution`; default: what a trained
    directory was trained at, else the checkpoint's own). ``device_map="auto"``
    spreads the model over every visible GPU (accelerate's big-model loading) instead of moving it to ``device``.
    ``fixed_shapes`` (the CLI's ``--reproducible``): True or a number of rows makes every forward the same shape, so
    scores do not depend on the batch size or the other images (:mod:`vcritic.inference.shapes`;
    ``Critic.fixed_shapes``).
    """
    from vcritic.model.judges import get_spec, judge_for
    from vcritic.model.runtime import resolve_device, resolve_dtype

    if readout is not None:
        get_spec(readout)  # an unknown name fails before any download
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if model is None or str(model) == "":
        model = default_model(torch_device.type == "cuda")
    placement = device_map
    if device_map is None and torch_device.type == "cuda":
        # Weights straight onto the one GPU: no full copy of the model in host memory first, then a second copy
        # over PCIe. On CPU (and MPS) the model loads where it will run, as before.
        placement = {"": _indexed(torch_device)}
    loaded = load_model(
        model,
        dtype=torch_dtype,
        adapter=adapter,
        revision=revision,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
        merge_adapter=merge_adapter,
        max_pixels=max_pixels,
        image_size=image_size,
        device_map=placement,
    )
    net = loaded.model
    if device_map is None:
        net.to(torch_device)  # nothing left to move where it was loaded onto the GPU
    else:  # inputs go where the first layers are; accelerate's hooks move activations between devices
        torch_device = _input_device(net, torch_device)
    net.eval()
    net.requires_grad_(False)

    from vcritic.inference.critic import Critic
    from vcritic.inference.encoder import Family

    return Critic(
        net,
        loaded.processor,
        family=Family.detect(net.config.model_type, loaded.processor),
        device=torch_device,
        dtype=torch_dtype,
        source=str(model),
        info=loaded.manifest,
        resolution=loaded.resolution,
        fixed_shapes=fixed_shapes,
        judge=judge_for(model, readout, manifest=loaded.manifest),
    )


def default_model(cuda: bool | None = None) -> str:
    """What --model defaults to: $VCRITIC_MODEL, else :func:`vcritic.model.presets.default_preset` (Q-ReAlign Lite where
    CUDA is, Mini on a CPU-only machine; downloaded on first use). ``cuda``: whether the model will run on a GPU
    (default: whether torch sees one)."""
    import os

    from vcritic.model.presets import default_preset

    return os.environ.get("VCRITIC_MODEL") or default_preset(cuda)


def _default_model() -> str:
    return default_model()


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


def _indexed(device):
    """``cuda`` -> ``cuda:N`` (the current device): a device map names one device."""
    import torch

    return device if device.index is not None else torch.device(device.type, torch.cuda.current_device())


def _input_device(net, fallback):
    import torch

    placed = getattr(net, "hf_device_map", None) or {}
    for where in placed.values():
        if where not in ("cpu", "disk"):
            return torch.device(where if isinstance(where, str) else f"cuda:{where}")
    return fallback


def with_attention(build, *args, **kwargs):
    """``build(*args, attn_implementation=..., **kwargs)`` with SDPA, or eager attention where a part of the model
    (e.g. InstructBLIP's Q-Former in some transformers releases) does not support SDPA; then the vision tower of a
    Qwen2-VL / Qwen2.5-VL model gets :mod:`vcritic.model.vision_attention` (its windows and images as a few batched SDPA
    calls). The one place that decides the attention implementation, for loaded checkpoints and for models built
    from a config alike."""
    from vcritic.model.vision_attention import use_for_vision

    try:
        model = build(*args, attn_implementation="sdpa", **kwargs)
    except ValueError as err:
        if "sdpa" not in str(err).lower() and "scaled_dot_product" not in str(err).lower():
            raise
        model = build(*args, attn_implementation="eager", **kwargs)
    # Set after loading, on the vision sub-config only: passed to from_pretrained, each sub-model's own init check
    # would look for a hub kernel (the name contains "flash", see vision_attention.NAME).
    use_for_vision(model)
    return model


def _load_model(
    directory: Path, dtype, trust_remote_code: bool, allow_pickle: bool, device_map: str | dict | None = None
):
    from transformers import AutoModelForImageTextToText
    from transformers.utils import logging as hf_logging

    # The CLI shows its own "Loading model" status; transformers' per-tensor bar would only add noise.
    hf_logging.disable_progress_bar()

    kwargs = dict(dtype=dtype, trust_remote_code=trust_remote_code)
    if device_map is not None:
        kwargs["device_map"] = device_map
    if not allow_pickle:
        kwargs["use_safetensors"] = True  # never unpickle weights unless asked: a .bin can run code
    try:
        return with_attention(AutoModelForImageTextToText.from_pretrained, directory, **kwargs)
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
    except Exception as err:
        if type(err).__name__ != "SafetensorError":  # safetensors' error type has moved between releases
            raise
        raise _corrupt_weights(directory, err) from None


def _corrupt_weights(directory: Path, err: Exception) -> VcriticError:
    """Name the weights file that safetensors could not read (0 bytes, cut short, a broken header)."""
    from safetensors import safe_open

    culprit = None
    for path in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(path, "pt"):
                pass
        except Exception:
            culprit = path
            break
    where = culprit or directory
    size = f", {culprit.stat().st_size} bytes" if culprit else ""
    return VcriticError(
        f"{where} is not a readable safetensors file{size}: {str(err).splitlines()[0]}",
        hint="it is empty, cut short or damaged: download it again (vcritic models rm NAME, then vcritic download "
        "NAME) or save the checkpoint again",
    )


def _apply_adapter(model, adapter_dir: Path, merge: bool, allow_pickle: bool = False):
    from peft import PeftModel

    if not (adapter_dir / "adapter_config.json").is_file():
        raise VcriticError(
            f"{adapter_dir} has no adapter_config.json",
            hint="the vcritic.json 'adapter' entry must point at it",
        )
    pickled = adapter_dir / "adapter_model.bin"
    if not allow_pickle and pickled.exists() and not (adapter_dir / "adapter_model.safetensors").is_file():
        # peft would unpickle it (torch's restricted loader where the installed torch has one): never by default.
        raise VcriticError(
            f"the adapter in {adapter_dir} has only pickled weights ({pickled.name}), which can run code when loaded",
            hint="convert it to adapter_model.safetensors, or pass --allow-pickle if you trust the source",
        )
    base_name = model.name_or_path
    made_for = _adapter_base(adapter_dir)
    origin = f" (it was made for {made_for})" if made_for and made_for != base_name else ""
    try:
        with warnings.catch_warnings():
            # Missing adapter keys are checked below and refused with a clearer message than peft's warning.
            warnings.filterwarnings("ignore", message="Found missing adapter keys")
            # peft reads transformers' deprecated `is_gradient_checkpointing`; not the user's concern.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            # Onto the base model's device (peft's default is the first GPU, wherever the model is).
            where = next(model.parameters()).device
            model = PeftModel.from_pretrained(model, adapter_dir, torch_device=str(where))
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        lines = str(err).splitlines() or [type(err).__name__]
        reason = next((line.strip() for line in lines if "size mismatch" in line), lines[0])
        raise VcriticError(
            f"could not apply the adapter in {adapter_dir} to {base_name}{origin}: {reason}",
            hint="use the adapter with the base model it was trained on",
        ) from None
    except Exception as err:
        if type(err).__name__ != "SafetensorError":
            raise
        raise _corrupt_weights(adapter_dir, err) from None
    _check_adapter_fits(model, adapter_dir, base_name, origin)
    return model.merge_and_unload() if merge else model


def _adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """``adapter_dir``'s ``adapter_config.json`` (empty when it has none), refused in one line over the size bound
    or damaged; peft reads it whole, unchecked."""
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        return {}
    from vcritic.base import limits

    hint = "pass the folder that peft's save_pretrained wrote, or save the adapter again"
    return limits.read_json_object(path, "an adapter_config.json", hint, limits.MAX_SMALL_JSON_BYTES)


def _adapter_base(adapter_dir: Path) -> str | None:
    made_for = _adapter_config(adapter_dir).get("base_model_name_or_path")
    return made_for if isinstance(made_for, str) else None


def _check_adapter_fits(model, adapter_dir: Path, base_name: str, origin: str) -> None:
    """Refuse an adapter made for another base model. peft only warns when the layers it adapts here get no weights
    from the file (or the file has weights for layers this model lacks), and the result is a silently different
    model; matching shapes are already enforced by peft's loading."""
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        return  # pickled adapters (--allow-pickle): peft's own checks only
    from safetensors import safe_open

    with safe_open(weights, "pt") as handle:
        saved = set(handle.keys())
    adapted = {key.replace(".default.", ".") for key in model.state_dict() if "lora_" in key}
    saved = {key for key in saved if "lora_" in key}
    missing, unexpected = sorted(adapted - saved), sorted(saved - adapted)
    if not (missing or unexpected):
        return
    problem = (
        f"{len(missing)} adapted weight(s) of this model are not in it (e.g. {missing[0]})"
        if missing
        else f"it has {len(unexpected)} weight(s) for layers this model lacks (e.g. {unexpected[0]})"
    )
    raise VcriticError(
        f"the adapter in {adapter_dir} does not fit the model {base_name}{origin}: {problem}",
        hint="use the adapter with the base model it was trained on",
    )

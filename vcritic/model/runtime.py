"""Device and dtype, decided in one place for every command.

CUDA runs bfloat16 (float16 on GPUs without bf16), CPU runs float32: half precision on CPU is slow and, for the
readout's softmax over a handful of logits, needlessly lossy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vcritic.errors import VcriticError

if TYPE_CHECKING:
    import torch

DTYPES = ("bfloat16", "float16", "float32")
DTYPE_ALIASES = {  # other spellings of DTYPES that --dtype accepts
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float": "float32",
}


def resolve_device(spec: str | None = None) -> torch.device:
    """``None``/``auto`` -> cuda if available, else mps, else cpu. Refuses devices that are not there."""
    import torch

    if spec is None or spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise VcriticError(
            f"unknown device {spec!r}", hint="use cpu, cuda, cuda:N or mps (or leave --device out)"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VcriticError("CUDA was requested but no CUDA GPU is visible", hint="use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise VcriticError(
                f"{spec} does not exist: {torch.cuda.device_count()} CUDA device(s) visible",
                hint=f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}",
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise VcriticError("MPS was requested but is not available on this machine", hint="use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise VcriticError(f"unsupported device {spec!r}", hint="use cpu, cuda, cuda:N or mps")
    return device


def resolve_dtype(spec: str | None, device: torch.device) -> torch.dtype:
    """The compute dtype for ``device``; an explicit ``spec`` must be one of :data:`DTYPES` (or a short alias)."""
    import torch

    if spec is None or spec == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    name = DTYPE_ALIASES.get(spec.lower(), spec.lower())
    if name not in DTYPES:
        raise VcriticError(f"unknown dtype {spec!r}", hint=f"use one of: {', '.join(DTYPES)}")
    dtype = getattr(torch, name)
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise VcriticError("this GPU does not support bfloat16", hint="use --dtype float16")
    return dtype

"""Options shared by several commands, declared once; the model options reach a command as one ModelSpec
(:func:`model_options`)."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated

import typer

from vcritic.base.docs_url import docs_page
from vcritic.inference.model_spec import ModelSpec
from vcritic.inference.shapes import ROWS
from vcritic.model.presets import CPU_DEFAULT_PRESET, DEFAULT_PRESET
from vcritic.model.resolution import MAX_IMAGE_SIZE, MAX_PIXELS

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Checkpoint: a local directory (a transformers image-text-to-text model, or a vcritic "
        "trained directory with vcritic.json), a preset name (see: vcritic models) or a hub repo id. Default: "
        f"{DEFAULT_PRESET} where CUDA is available, {CPU_DEFAULT_PRESET} otherwise (downloaded on first use).",
        envvar="VCRITIC_MODEL",
        show_default=False,
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace an existing output file. It stays as it was until the first new row, which replaces it whole.",
    ),
]
AdapterOpt = Annotated[
    Path | None,
    typer.Option("--adapter", help="A peft LoRA adapter directory to apply on top of --model.", show_default=False),
]
RevisionOpt = Annotated[
    str | None,
    typer.Option(
        "--revision",
        help="Hub revision (branch, tag or commit) of the --model preset or repo id. Default: the preset's pinned "
        "commit, or main.",
        show_default=False,
    ),
]


def json_flag(help: str):
    """The --json flag (parameter ``as_json``), the same on every command that prints JSON; ``help`` says what."""
    return Annotated[bool, typer.Option("--json", help=help)]


def usage_callback(check):
    """A Typer callback from ``check(value)``: a bad value is a usage error (exit 2) before any work is done."""

    def callback(value):
        if value is not None:
            check(value)
        return value

    return callback


def check_device(spec: str) -> None:
    """The spelling of a --device (whether it is there is found out when the model loads)."""
    import re

    from vcritic.errors import UsageError

    if not re.fullmatch(r"auto|(cpu|mps|cuda)(:\d+)?", spec.strip()):
        raise UsageError(f"unknown device {spec!r}", hint="use cpu, cuda, cuda:N or mps (or leave --device out)")


def check_dtype(spec: str) -> None:
    from vcritic.errors import UsageError
    from vcritic.model.runtime import DTYPE_ALIASES, DTYPES

    if spec != "auto" and DTYPE_ALIASES.get(spec.lower(), spec.lower()) not in DTYPES:
        raise UsageError(f"unknown dtype {spec!r}", hint=f"use one of: {', '.join(DTYPES)}")


def check_tasks(spec: str) -> None:
    from vcritic.readout.tasks import parse_tasks

    parse_tasks(spec)  # raises UsageError


def check_readout(spec: str) -> None:
    from vcritic.errors import UsageError, VcriticError
    from vcritic.model.judges import get_spec

    try:
        get_spec(spec)
    except VcriticError as err:
        raise UsageError(err.message, hint=err.hint) from None


def check_split(spec: str) -> None:
    from vcritic.datasets.splits import SPLIT_NAMES
    from vcritic.errors import UsageError

    if spec not in SPLIT_NAMES:
        raise UsageError(f"unknown split {spec!r}", hint=f"use one of: {', '.join(SPLIT_NAMES)}")


def check_scheme(spec: str) -> None:
    from vcritic.datasets.splits import SCHEMES
    from vcritic.errors import UsageError

    if spec not in SCHEMES:
        raise UsageError(f"unknown split scheme {spec!r}", hint=f"use one of: {', '.join(SCHEMES)}")


ReadoutOpt = Annotated[
    str | None,
    typer.Option(
        "--readout",
        help="How MOS is asked and read out: a read-out (vcritic, q-realign, visualquality-r1) or a preset name whose "
        "read-out to use, e.g. for a downloaded copy or a fine-tune of a judge in a local folder. Default: the "
        "preset's own, what a trained folder's vcritic.json records, else vcritic's prompts (see: vcritic models -l).",
        show_default=False,
        callback=usage_callback(check_readout),
    ),
]


DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        callback=usage_callback(check_device),
        help="cpu, cuda, cuda:N or mps. Default: cuda if available, else cpu.",
        show_default=False,
    ),
]
DtypeOpt = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        callback=usage_callback(check_dtype),
        help="bfloat16, float16 or float32. Default: bfloat16 on CUDA (float16 where bf16 is unsupported), "
        "float32 on CPU.",
        show_default=False,
    ),
]


def _batch_size(value: str) -> int | str:
    from vcritic.engine.batches import parse_batch_size
    from vcritic.errors import VcriticError

    try:
        return parse_batch_size(value)
    except VcriticError:  # a usage error (exit 2), as for Typer's own type checks
        raise typer.BadParameter(f"{value!r} is not a positive number or 'auto'") from None


BatchSizeOpt = Annotated[
    str,
    typer.Option(
        "--batch-size",
        "-b",
        callback=_batch_size,
        metavar="N|auto",
        help="Images per forward pass, or 'auto' (CUDA: from free GPU memory and one measured image; CPU: 8). On "
        "CUDA out-of-memory the batch is halved and retried. Scores move with it only by rounding: up to 1e-5 on "
        "CPU in float32, a few MOS points on a GPU in bfloat16; --reproducible removes that. See "
        + docs_page("explanations/score-tolerance"),
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=0,
        help="Processes that decode and preprocess images while the model runs. Default: up to 4 (0 = inline).",
        show_default=False,
    ),
]
TrustRemoteCodeOpt = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code",
        help="Allow the checkpoint to run its own Python code. Off by default: only enable for repos you trust.",
    ),
]
AllowPickleOpt = Annotated[
    bool,
    typer.Option(
        "--allow-pickle",
        help="Allow loading pickled .bin weights (can execute code). Off by default: safetensors only.",
    ),
]
TasksOpt = Annotated[
    str,
    typer.Option(
        "--tasks",
        "-t",
        callback=usage_callback(check_tasks),
        help="What to read out, comma-separated: mos (0-100), attributes (brightness, colorfulness, contrast, "
        "noisiness, sharpness; 0-100 each, higher = more), authenticity (p_ai_generated, 0-1), or all. The image "
        "is encoded once for all of them.",
    ),
]

CalibrationOpt = Annotated[
    Path | None,
    typer.Option(
        "--calibration",
        help="A calibration.json from 'vcritic calibrate': adds mos_calibrated (the MOS on that dataset's own "
        "scale) and calibrated_scale (which scale). Refused for another model than it was fitted for.",
        show_default=False,
    ),
]
ForceCalibrationModelOpt = Annotated[
    bool,
    typer.Option(
        "--force-calibration-model",
        help="Apply --calibration even though it was fitted for another model (a warning names both).",
    ),
]


def _in_range(ctx, param, value: int | None) -> int | None:
    """--max-pixels / --image-size: the sane range of :mod:`vcritic.model.resolution`, checked before any work (a model
    download, a dataset scan), as a usage error."""
    from vcritic.errors import UsageError, VcriticError
    from vcritic.model.resolution import check_range

    try:
        check_range(**{param.name: value})
    except VcriticError as err:
        raise UsageError(err.message, hint=err.hint) from None
    return value


MaxPixelsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-pixels",
        callback=_in_range,
        help="Pixel budget per image for Qwen2-VL/2.5-VL (one visual token per 28x28 px): lower is faster and "
        f"lighter, higher sees more detail; 1 to {MAX_PIXELS}. Default: what a vcritic trained model was trained "
        "at (its vcritic.json), else the checkpoint's (12845056 for Qwen2.5-VL: a 1024x768 image is 999 tokens). "
        "Refused for fixed-size towers (LLaVA, BLIP-2, InstructBLIP).",
        show_default=False,
    ),
]
ImageSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--image-size",
        callback=_in_range,
        help="Resize every image to this square side first, the paper's fixed input (224 or 448; 256 visual "
        f"tokens at 448 for Qwen2-VL/2.5-VL, which take multiples of 28); 1 to {MAX_IMAGE_SIZE}. Fixed-size "
        "towers accept only their own size. Default: what a vcritic trained model was trained at (its "
        "vcritic.json), else the checkpoint's resizing. Either flag replaces both recorded values.",
        show_default=False,
    ),
]
DeviceMapOpt = Annotated[
    str | None,
    typer.Option(
        "--device-map",
        help="'auto': spread a model too large for one GPU over all visible GPUs (accelerate's big-model loading; "
        "also 'balanced', 'balanced_low_0', 'sequential'). Default: the whole model on --device.",
        show_default=False,
    ),
]


def parse_range(text: str | None, option: str = "--mos-range") -> tuple[float, float] | None:
    """``LOW-HIGH`` (also ``LOW:HIGH``, ``LOW,HIGH``, negative ends allowed) as two numbers; None for None."""
    from vcritic.errors import UsageError

    if text is None:
        return None
    parts = text.replace(",", " ").replace(":", " ").split()
    if len(parts) == 1 and "-" in text[1:]:
        split_at = text.index("-", 1)
        parts = [text[:split_at], text[split_at + 1 :]]
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not LOW-HIGH", hint=f"e.g. {option} 1-5") from None
    if not high > low:
        raise UsageError(f"{option} {text!r} is empty", hint="the highest score must exceed the lowest")
    return low, high


ReproducibleOpt = Annotated[
    bool,
    typer.Option(
        "--reproducible",
        help=f"Fixed compute shapes: images are grouped by size and every forward pass reads exactly {ROWS} of them "
        "(copies fill a partial group), so a score does not depend on --batch-size or the other images (bitwise on "
        f"CPU; not yet measured on a GPU). Costs up to {ROWS - 1} copies per size in each batch (a lone image is "
        f"{ROWS}x the work); --batch-size then only sets how many images are read and grouped per step. "
        f"See {docs_page('explanations/score-tolerance')}",
    ),
]


# The model options in the order --help lists them, with their defaults: the fields of ModelSpec.
_MODEL_OPTIONS = {
    "model": (ModelOpt, None),
    "readout": (ReadoutOpt, None),
    "adapter": (AdapterOpt, None),
    "revision": (RevisionOpt, None),
    "batch_size": (BatchSizeOpt, "8"),
    "reproducible": (ReproducibleOpt, False),
    "workers": (WorkersOpt, None),
    "device": (DeviceOpt, None),
    "dtype": (DtypeOpt, None),
    "trust_remote_code": (TrustRemoteCodeOpt, False),
    "allow_pickle": (AllowPickleOpt, False),
    "max_pixels": (MaxPixelsOpt, None),
    "image_size": (ImageSizeOpt, None),
    "device_map": (DeviceMapOpt, None),
}


def model_options(*, without: tuple[str, ...] = ()):
    """Give a command the model options, handed to it as one :class:`ModelSpec` argument ``spec``.

    The command declares ``spec: ModelSpec = ModelSpec()``; its --help lists the options where that parameter is,
    in the same order for every command. ``without``: options that mean nothing to this command (say why where it
    is used). An option the command declares itself keeps its own place in --help (serve lists --model first) and
    reaches the command both as itself and in ``spec``.
    """
    unknown = set(without) - set(_MODEL_OPTIONS)
    if unknown:
        raise ValueError(f"not a model option: {', '.join(sorted(unknown))}")

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        own = signature.parameters
        if "spec" not in own:
            raise TypeError(f"{command.__name__} has no 'spec' parameter for its model options")
        block = [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation, default=default)
            for name, (annotation, default) in _MODEL_OPTIONS.items()
            if name not in without and name not in own
        ]
        parameters = [p for param in own.values() for p in (block if param.name == "spec" else [param])]

        @functools.wraps(command)
        def with_spec(**kwargs):
            given = [name for name in _MODEL_OPTIONS if name in kwargs]
            options = {name: kwargs[name] if name in own else kwargs.pop(name) for name in given}
            return command(**kwargs, spec=ModelSpec(**options))

        # Typer reads the options from the signature (and its annotations), so it sees the options, not spec.
        with_spec.__signature__ = signature.replace(parameters=parameters)
        with_spec.__annotations__ = {p.name: p.annotation for p in parameters}
        return with_spec

    return decorate

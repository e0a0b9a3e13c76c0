"""Loading the model for a command: fetch first (with a live download bar), then load under a spinner."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vcritic.inference.model_spec import ModelSpec


@dataclass(frozen=True)
class Loaded:
    """What a command's summary says about its model: which one, at which revision, how long loading took, and at
    which resolution it sees images."""

    name: str
    revision: str | None  # the commit of a hub snapshot; None for a local folder
    seconds: float
    resolution: str = "the checkpoint's default resolution"

    def __str__(self) -> str:
        at = f" @ {self.revision[:12]}" if self.revision else ""
        return f"{self.name}{at}, loaded in {self.seconds:.1f} s; images at {self.resolution}"


def load_for_command(spec: ModelSpec):
    """:meth:`ModelSpec.load` for the CLI. Resolving the checkpoint before the "Loading ..." spinner lets a first-use
    download show its own progress bar; ``load_critic`` then finds the model in the cache without network access.
    The critic gets a ``loaded`` attribute (:class:`Loaded`) for the command's summary."""
    from dataclasses import replace

    from rich.markup import escape

    from vcritic.cli._output import stderr
    from vcritic.model.hub import resolve_model
    from vcritic.pipeline.distributed import is_secondary_process

    name = spec.model or default_for_command(spec.device)
    directory = resolve_model(name, spec.revision, allow_pickle=spec.allow_pickle)
    started = time.perf_counter()
    # Under accelerate launch one spinner is enough: the other processes would each draw their own over it.
    spinner = nullcontext() if is_secondary_process() else stderr.status(f"Loading {escape(name)}...")
    with spinner:
        critic = replace(spec, model=name).load()
    commit = directory.name if directory.parent.name == "snapshots" else None  # the hub cache's layout
    critic.loaded = Loaded(name, commit, time.perf_counter() - started, str(critic.resolution))
    return critic


def default_for_command(device: str | None = None, *, announce: bool = True) -> str:
    """The model a command loads without --model (:func:`vcritic.inference.loading.default_model`). Without CUDA (or
    with
    another --device) that is the laptop-class preset, said in one line on stderr, so the choice is never silent."""
    import os

    from vcritic.inference.loading import default_model
    from vcritic.model.presets import DEFAULT_PRESET

    cuda = device is None or device.startswith("cuda")
    if cuda:
        import torch

        cuda = torch.cuda.is_available()
    name = default_model(cuda)
    if announce and name != DEFAULT_PRESET and not os.environ.get("VCRITIC_MODEL"):
        from vcritic.cli._output import stderr

        stderr.print(
            f"No CUDA GPU: using {name}, the laptop-class judge ({DEFAULT_PRESET} needs a GPU to be quick); "
            "choose another with --model (see: vcritic models)",
            markup=False,
        )
    return name

"""Which model to load and how to run it: the model options every command shares, as one value.

The CLI builds a :class:`ModelSpec` from ``--model``, ``--revision``, ``--device``, ... (see
``vcritic.cli._options.model_options``); the API can build one too. :meth:`ModelSpec.load` is
:func:`vcritic.inference.loading.load_critic` with these options, and :meth:`ModelSpec.to_load_kwargs` its arguments.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    model: str | None = None  # a local folder, preset name or hub repo id; None: the default model
    readout: str | None = None
    adapter: Path | None = None
    revision: str | None = None
    reproducible: bool = False  # load_critic's fixed_shapes
    device: str | None = None
    dtype: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    max_pixels: int | None = None
    image_size: int | None = None
    device_map: str | None = None
    # How a command runs the loaded model over many images; not part of loading.
    batch_size: int | str = 8
    workers: int | None = None

    def to_load_kwargs(self) -> dict:
        """The keyword arguments of :func:`vcritic.inference.loading.load_critic` (``model`` among them)."""
        kwargs = asdict(self)
        del kwargs["batch_size"], kwargs["workers"]
        kwargs["fixed_shapes"] = kwargs.pop("reproducible")
        return kwargs

    def load(self):
        """The :class:`vcritic.inference.critic.Critic` these options describe."""
        from vcritic.inference.loading import load_critic

        return load_critic(**self.to_load_kwargs())

    def on(self, device: str | None) -> ModelSpec:
        """The same spec on another device (a process of a data-parallel team on its own GPU)."""
        return replace(self, device=device)

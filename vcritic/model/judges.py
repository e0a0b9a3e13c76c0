"""Which judge a model is: its read-out (:class:`~vcritic.model.readout_specs.ReadoutSpec`) and the tasks it was
trained for, found from ``--readout``, a trained folder's ``vcritic.json`` or the preset its name is, without loading
it. The specs themselves live in :mod:`vcritic.model.readout_specs`, under the presets that name them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcritic.errors import VcriticError
from vcritic.model.readout_specs import SPECS, VCRITIC, ReadoutSpec
from vcritic.model.vcritic_json import manifest_readout, manifest_trained_tasks, read_manifest


def get_spec(name: str) -> ReadoutSpec:
    """The read-out called ``name``: a spec name (``q-realign``) or a preset name (``q-realign-mini-0.8b``)."""
    from vcritic.model.presets import PRESETS, get_preset

    if name.lower() in SPECS:
        return SPECS[name.lower()]
    preset = get_preset(name)
    if preset is not None:
        return preset.spec
    close = difflib.get_close_matches(name.lower(), [*SPECS, *PRESETS], n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise VcriticError(
        f"unknown read-out {name!r}",
        hint=f"{hint}use one of {', '.join(SPECS)} or a preset name (see: vcritic models --long)",
    )


@dataclass(frozen=True)
class Judge:
    """What a model is asked and what it was trained for: its read-out and its trained tasks (None: undeclared)."""

    spec: ReadoutSpec
    trained_tasks: tuple[str, ...] | None

    def untrained(self, tasks) -> tuple[str, ...]:
        return self.spec.untrained(tasks, self.trained_tasks)


def judge_for(model: str | Path | None, readout: str | None = None, manifest: dict[str, Any] | None = None) -> Judge:
    """The read-out and trained tasks of ``model`` (a preset, hub id or folder), without loading it.

    ``readout`` (``--readout``) wins; then a trained folder's ``vcritic.json`` (``readout``, ``trained_tasks``;
    files without them were written by a vcritic that knew only its own prompts); then the preset the name or
    repo id is; anything else is asked vcritic's prompts.
    """
    from vcritic.model.presets import get_preset, preset_for_repo

    if manifest is None and model is not None:
        manifest = _local_manifest(model)
    preset = None
    if model is not None and manifest is None:
        preset = get_preset(str(model)) or preset_for_repo(str(model))
    if readout is not None:
        spec = get_spec(readout)
        if manifest is not None:
            return Judge(spec, manifest_trained_tasks(manifest))
        return Judge(spec, preset.spec.trained_tasks if preset is not None else spec.trained_tasks)
    if manifest is not None:
        spec = get_spec(manifest_readout(manifest) or VCRITIC.name)
        return Judge(spec, manifest_trained_tasks(manifest))
    if preset is not None:
        return Judge(preset.spec, preset.spec.trained_tasks)
    return Judge(VCRITIC, None)


def _local_manifest(model: str | Path) -> dict[str, Any] | None:
    path = Path(model).expanduser()
    return read_manifest(path) if path.is_dir() else None


def untrained_note(judge: Judge, tasks, model: str) -> str | None:
    """The one line that says which asked tasks the judge was not trained for, or None."""
    missing = judge.untrained(tasks)
    if not missing:
        return None
    trained = ", ".join(judge.trained_tasks or judge.spec.trained_tasks or ()) or "none"
    return (
        f"Note: {model} was trained for {trained} only; its {', '.join(missing)} are zero-shot guesses (marked in "
        "the untrained column)"
    )

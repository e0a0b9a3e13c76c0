"""``vcritic.json``: the file that makes a folder a vcritic trained directory. This module is the one that knows its
keys: ``vcritic train`` writes it through :func:`write_manifest`, and loading and scoring read it back through
:func:`read_manifest` and the ``manifest_*`` functions below. A file ``vcritic train`` writes::

    {"format": 1, "base_model": "Qwen/Qwen2.5-VL-7B-Instruct", "base_revision": null,
     "adapters": ["previous/1", "."], "stage": 2, "stages": [1, 2], "data": "/abs/path/of/--data",
     "trained_on": ["koniq10k", ...], "config": {...}, "resolution": {"max_pixels": null, "image_size": 448},
     "readout": "vcritic", "trained_tasks": ["mos", "attributes"], "vcritic_version": "0.1.0", "description": "..."}

- ``base_model``, ``base_revision``: the checkpoint the adapters go on (a local folder by absolute path); ``"."``
  for a model trained in full, whose weights are in the folder itself (``"adapters": []``).
- ``adapters``: folders inside the trained directory, merged in order; older files name one ``"adapter"``.
- ``resolution``: how large training saw the images, the default for scoring (absent in older files: the
  checkpoint's own resizing); checked by :func:`vcritic.model.resolution.chosen_resolution`.
- ``readout``, ``trained_tasks``: how scoring asks this model for MOS (:mod:`vcritic.model.judges`) and the tasks it
  was trained for (absent in files written by a vcritic that knew only its own prompts).
- the rest (``stage``, ``stages``, ``data``, ``trained_on``, ``config``, ``vcritic_version``, ``description``) say
  how it was made; ``stages`` and ``trained_on`` carry over to the next stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vcritic.base.files import write_json_atomically
from vcritic.errors import VcriticError

if TYPE_CHECKING:
    from vcritic.model.resolution import Resolution

VCRITIC_JSON = "vcritic.json"
FORMAT = 1
WHOLE_MODEL = "."  # base_model of a model trained in full: its weights are in the trained directory itself
RESOLUTION = "resolution"  # the key chosen_resolution reads and names in its error


def write_manifest(
    directory: Path,
    *,
    base_model: str,
    base_revision: str | None,
    adapters: Sequence[str],
    stages: Sequence[int],
    data: Path,
    trained_on: Sequence[str],
    config: Mapping[str, Any],
    resolution: Resolution,
    readout: str,
    trained_tasks: Sequence[str],
) -> Path:
    """Write ``directory/vcritic.json`` atomically, for a model trained in ``stages`` (the last is this run's)."""
    from vcritic import __version__

    manifest = {
        "format": FORMAT,
        "base_model": base_model,
        "base_revision": base_revision,
        "adapters": list(adapters),
        "stage": stages[-1],
        "stages": list(stages),
        "data": str(data),
        "trained_on": list(trained_on),
        "config": dict(config),
        RESOLUTION: resolution.as_manifest(),
        "readout": readout,
        "trained_tasks": list(trained_tasks),
        "vcritic_version": __version__,
        "description": f"VisualCritic stage {stages[-1]} on {base_model}",
    }
    path = directory / VCRITIC_JSON
    write_json_atomically(path, manifest)
    return path


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The ``vcritic.json`` of ``directory`` as written, or None when it has none; it must name a ``base_model``."""
    path = directory / VCRITIC_JSON
    if not path.is_file():
        return None
    from vcritic.base.limits import read_json_object

    manifest = read_json_object(path, "a vcritic.json", "fix or remove the file")
    if "base_model" not in manifest:
        raise VcriticError(f"{path} has no 'base_model'", hint="it must name the base checkpoint the adapter is for")
    return manifest


def manifest_base(manifest: dict[str, Any]) -> tuple[str, str | None]:
    """The base model (:data:`WHOLE_MODEL` for a model trained in full) and its revision."""
    return str(manifest["base_model"]), manifest.get("base_revision")


def manifest_stages(manifest: dict[str, Any]) -> list[int]:
    """The curriculum stages the model was trained in, in order (none in files written before the key)."""
    return list(manifest.get("stages") or [])


def manifest_trained_on(manifest: dict[str, Any]) -> list[str]:
    """The datasets the model's stages were trained on."""
    return list(manifest.get("trained_on") or [])


def manifest_readout(manifest: dict[str, Any]) -> str | None:
    """The read-out scoring asks the model with (a :mod:`vcritic.model.judges` name), or None when not recorded."""
    readout = manifest.get("readout")
    return str(readout) if readout else None


def manifest_trained_tasks(manifest: dict[str, Any]) -> tuple[str, ...] | None:
    """The tasks the model was trained for, or None when not recorded."""
    value = manifest.get("trained_tasks")
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise VcriticError(f"{VCRITIC_JSON}: 'trained_tasks' must be a list of task names", hint='e.g. ["mos"]')
    return tuple(value)


def manifest_resolution(manifest: dict[str, Any] | None) -> Any:
    """The recorded image size as written (``{"max_pixels": .., "image_size": ..}``), or None; unchecked."""
    return (manifest or {}).get(RESOLUTION)


def manifest_adapters(manifest: dict[str, Any]) -> list[str]:
    """The adapters of a trained directory, in the order they are merged: a stage-N+1 model lists its earlier
    stages' adapters (copied into its own folder) before its own, so it loads alone."""
    adapters = manifest.get("adapters")
    if adapters is None:
        return [manifest.get("adapter", ".")]
    if not isinstance(adapters, list) or not all(isinstance(a, str) for a in adapters):
        raise VcriticError(f"{VCRITIC_JSON}: 'adapters' must be a list of folders", hint='e.g. ["previous/1", "."]')
    return adapters


def manifest_adapter_dirs(directory: Path, manifest: dict[str, Any]) -> list[Path]:
    """The adapter folders a trained directory's ``vcritic.json`` names, each checked to lie inside ``directory``:
    a trained folder names only files inside itself, so an absolute path, a ``..`` or a symlink that leads out
    (to someone else's adapter, or a file vcritic should not read) is refused."""
    root = directory.resolve()
    found = []
    for name in manifest_adapters(manifest):
        parts = Path(name).parts
        target = directory / name
        inside = [target, target / "adapter_config.json", *target.glob("adapter_model.*")]
        if Path(name).is_absolute() or ".." in parts or not all(_within(p, root) for p in inside):
            raise VcriticError(
                f"{directory / VCRITIC_JSON} names the adapter {name!r}, which is outside {directory}",
                hint='a trained folder names only folders inside itself (e.g. "." or "previous/1"); copy the '
                "adapter into it and name it by its relative path",
            )
        found.append(target)
    return found


def _within(path: Path, root: Path) -> bool:
    resolved = path.resolve()
    return resolved == root or root in resolved.parents

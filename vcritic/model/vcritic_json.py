"""``vcritic.json``: the file that makes a folder a vcritic trained directory, read and checked in one place.

It names the base model and the adapters merged on top of it (see :mod:`vcritic.inference.loading` for the keys),
and what the model was trained for (``readout``, ``trained_tasks``, ``resolution``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vcritic.errors import VcriticError

MANIFEST = "vcritic.json"


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    if not path.is_file():
        return None
    from vcritic.base.limits import MAX_JSON_BYTES, check_input

    check_input(path, MAX_JSON_BYTES, "a vcritic.json")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise VcriticError(f"{path} is not valid JSON: {err}", hint="fix or remove the file") from None
    except (UnicodeDecodeError, RecursionError):
        raise VcriticError(f"{path} is not a vcritic.json vcritic wrote", hint="fix or remove the file") from None
    if not isinstance(manifest, dict) or "base_model" not in manifest:
        raise VcriticError(f"{path} has no 'base_model'", hint="it must name the base checkpoint the adapter is for")
    return manifest


def manifest_adapters(manifest: dict[str, Any]) -> list[str]:
    """The adapters of a trained directory, in the order they are merged: a stage-N+1 model lists its earlier
    stages' adapters (copied into its own folder) before its own, so it loads alone."""
    adapters = manifest.get("adapters")
    if adapters is None:
        return [manifest.get("adapter", ".")]
    if not isinstance(adapters, list) or not all(isinstance(a, str) for a in adapters):
        raise VcriticError(f"{MANIFEST}: 'adapters' must be a list of folders", hint='e.g. ["previous/1", "."]')
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
                f"{directory / MANIFEST} names the adapter {name!r}, which is outside {directory}",
                hint='a trained folder names only folders inside itself (e.g. "." or "previous/1"); copy the '
                "adapter into it and name it by its relative path",
            )
        found.append(target)
    return found


def _within(path: Path, root: Path) -> bool:
    resolved = path.resolve()
    return resolved == root or root in resolved.parents

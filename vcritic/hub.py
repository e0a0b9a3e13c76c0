"""Turning a ``--model`` value into a local checkpoint directory.

A local directory is used as it is; anything else is taken as a hub repo id and fetched with ``huggingface_hub``
(safetensors, configs and tokenizer/processor files only).
"""

from __future__ import annotations

from pathlib import Path

from vcritic.errors import VcriticError

# What loading needs from a repo; pickled *.bin weights are only fetched when the user allows pickle.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt"]


def resolve_model(name: str, revision: str | None = None, *, allow_pickle: bool = False) -> Path:
    """A local directory holding the checkpoint ``name`` (a path, or a hub repo id)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise VcriticError(f"{name} is a file, not a checkpoint directory", hint="pass the folder that holds config.json")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise VcriticError(f"no such checkpoint directory: {name}", hint="check the path")
    from huggingface_hub import snapshot_download

    patterns = ALLOW_PATTERNS + (PICKLE_PATTERNS if allow_pickle else [])
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=patterns))
    except Exception as err:  # the hub raises many types; the message says which
        raise VcriticError(
            f"could not fetch model {name!r}: {type(err).__name__}: {err}".splitlines()[0],
            hint=f"check the name, or download it first with: vcritic download {name}",
        ) from err

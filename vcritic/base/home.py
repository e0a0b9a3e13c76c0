"""Where vcritic keeps things on disk, and how it talks to the hub, read from the environment at call time.

``huggingface_hub`` reads ``HF_HOME``, ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once, when it is imported; vcritic
reads them each time and passes the values explicitly, so changing the environment (as tests do) takes effect.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "on", "yes", "true"}


def vcritic_home() -> Path:
    """vcritic's own folder: ``$VCRITIC_HOME``, else the platform's user cache dir (``~/.cache/vcritic`` on Linux)."""
    env = os.environ.get("VCRITIC_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("vcritic", appauthor=False)


def hub_cache_dir() -> Path:
    """The hub cache (``models--org--name`` layout). ``HF_HUB_CACHE`` or ``HF_HOME`` win when the user set them, so a
    cache shared with other Hugging Face tools is reused; otherwise it lives in the vcritic home."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    return vcritic_home() / "hub"


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) as set now, or as huggingface_hub saw it at import."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return True
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def data_root() -> Path:
    """Where ``vcritic bench`` looks for datasets without ``--root``: ``$VCRITIC_DATA``, else ``<home>/datasets``."""
    env = os.environ.get("VCRITIC_DATA")
    return Path(env).expanduser() if env else vcritic_home() / "datasets"

"""Whether progress is shown: one rule for the command line's bars and the library's download bar."""

from __future__ import annotations

import os
import sys


def progress_enabled() -> bool:
    """Progress bars only when a person is watching stderr (and not in CI logs or pipes); ``VCRITIC_NO_PROGRESS=1``
    turns them off."""
    if os.environ.get("VCRITIC_NO_PROGRESS"):
        return False
    return sys.stderr.isatty()

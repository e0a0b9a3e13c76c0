"""Where output goes: data to stdout, progress, logs and errors to stderr."""

from __future__ import annotations

import os
import sys

from rich.console import Console

# Data (CSV, JSON, result lines) goes to stdout so it can be piped; everything meant for a human reading the
# terminal goes to stderr.
stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def progress_enabled() -> bool:
    """Progress bars only when a person is watching stderr (and not in CI logs or pipes)."""
    if os.environ.get("VCRITIC_NO_PROGRESS"):
        return False
    return sys.stderr.isatty()


def make_progress(enabled: bool | None = None):
    """A rich progress bar on stderr: what it is doing, count, rate and time left."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        disable=not (progress_enabled() if enabled is None else enabled),
        transient=False,
    )

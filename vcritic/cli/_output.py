"""Where output goes: data to stdout, progress, logs and errors to stderr."""

from __future__ import annotations

import contextlib
import errno
import os
import sys

from rich.console import Console

from vcritic.base.progress import progress_enabled
from vcritic.cli._exit import EXIT_BROKEN_PIPE


def reader_left():
    """stdout's reader is gone (`vcritic ... | head -1`): stop quietly with exit 141. stdout is pointed at /dev/null
    so Python's own flush at exit does not raise again. Raised as typer.Exit at the write itself, because click
    turns an EPIPE that reaches it into exit 1."""
    import typer

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise typer.Exit(EXIT_BROKEN_PIPE)


class GuardedStdout:
    """``sys.stdout`` while a command runs: whichever writer reaches it (typer.echo, Rich, ``sys.stdout.write``), a
    reader that left stops the run quietly (:func:`reader_left`) and a full disk or an I/O error is one line
    (:class:`~vcritic.errors.VcriticError`), never a traceback."""

    def __init__(self, stream):
        self._stream = stream

    @property
    def buffer(self):
        """The binary stream under it, guarded too (click's echo writes bytes there)."""
        return GuardedStdout(self._stream.buffer)

    def write(self, data):
        try:
            return self._stream.write(data)
        except OSError as err:
            if not data:  # click probes streams with empty writes; on a full disk even those fail
                return 0
            _stdout_failed(self._stream, err)

    def flush(self):
        try:
            self._stream.flush()
        except OSError as err:
            _stdout_failed(self._stream, err)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _stdout_failed(stream, err: OSError):
    if isinstance(err, BrokenPipeError):
        reader_left()
    from vcritic.errors import VcriticError

    # What is still buffered can never be written: point stdout at /dev/null so the flush at exit does not fail too.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    raise VcriticError(
        f"cannot write to standard output: {err.strerror or err}",
        hint="free some space, or send the output elsewhere (-o FILE)" if err.errno == errno.ENOSPC else None,
    ) from None


class _DataConsole(Console):
    """stdout, where a reader that leaves is not a failure (Rich's own answer is SystemExit(1))."""

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more reaches the gone reader
        reader_left()


# Data (CSV, JSON, result lines) goes to stdout so it can be piped; everything meant for a human reading the
# terminal goes to stderr.
stdout = _DataConsole(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


LOG_INTERVAL_S = 30.0  # without a terminal, one progress line this often


def make_progress(enabled: bool | None = None):
    """A rich progress bar on stderr: what it is doing, count, rate and time left. When stderr is not a terminal
    (a log file, CI, nohup) a line every ``LOG_INTERVAL_S`` instead; ``VCRITIC_NO_PROGRESS=1`` silences both."""
    if enabled is None and not progress_enabled() and not os.environ.get("VCRITIC_NO_PROGRESS"):
        return LogProgress()
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


class LogProgress:
    """The subset of rich's Progress that the commands use, printed as periodic plain lines."""

    def __init__(self):
        self.tasks: dict[int, dict] = {}

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            for task in self.tasks.values():
                if task["done"] and task["done"] != task["logged"]:
                    self._log(task)

    def add_task(self, description: str, total: int | None = None, **fields) -> int:
        import time

        key = len(self.tasks)
        now = time.monotonic()
        self.tasks[key] = {"description": description, "total": total, "done": 0, "logged": 0, "start": now,
                           "last": now}  # fmt: skip
        return key

    def update(self, key: int, advance: int = 0, **fields) -> None:
        import time

        task = self.tasks[key]
        task["done"] += advance
        if time.monotonic() - task["last"] >= LOG_INTERVAL_S:
            self._log(task)

    def _log(self, task: dict) -> None:
        import datetime
        import time

        now = time.monotonic()
        elapsed = max(now - task["start"], 1e-9)
        rate = task["done"] / elapsed
        line = f"{task['description']}: {task['done']}"
        if task["total"]:
            line += f"/{task['total']} ({100 * task['done'] / task['total']:.0f}%)"
        line += f", {rate:.1f}/s"
        if task["total"] and rate > 0 and task["done"] < task["total"]:
            line += f", {datetime.timedelta(seconds=round((task['total'] - task['done']) / rate))} left"
        stderr.print(line, markup=False, highlight=False)
        task["last"], task["logged"] = now, task["done"]

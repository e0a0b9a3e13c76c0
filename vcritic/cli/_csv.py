"""Streaming CSV output: a file (written as rows arrive, flushed per batch) or stdout for ``-o -``."""

from __future__ import annotations

import contextlib
import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from vcritic.errors import VcriticError


def check_output(path: Path | None, overwrite: bool) -> None:
    """Fail before any model is loaded if the output cannot be written, or would clobber earlier results."""
    if path is None or str(path) == "-":
        return
    if path.is_dir():
        raise VcriticError(f"output {path} is a folder", hint="give a file name, e.g. -o scores.csv")
    if path.exists() and not overwrite:
        raise VcriticError(f"{path} already exists", hint="pass --overwrite to replace it, or choose another -o")
    if not path.parent.exists():
        raise VcriticError(f"folder {path.parent} does not exist", hint="create it first")


@contextlib.contextmanager
def csv_output(path: Path | None, fieldnames: list[str]) -> Iterator[csv.DictWriter]:
    """A DictWriter whose header is already written; ``None`` or ``-`` means stdout."""
    if path is None or str(path) == "-":
        writer = csv.DictWriter(sys.stdout, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        yield writer
        sys.stdout.flush()
        return
    try:
        handle = path.open("w", newline="", encoding="utf-8")
    except OSError as err:
        raise VcriticError(f"cannot write {path}: {err.strerror}", hint="check the path and permissions") from None
    with handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        handle.flush()
        yield writer

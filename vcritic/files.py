"""Whole-file writes: a small output (a report page, a calibration) replaces its path in one step."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from vcritic.errors import VcriticError


def write_atomically(output: str | os.PathLike, data: bytes, *, hint: str | None = None) -> Path:
    """Write ``data`` beside ``output``, sync, and rename over it: the path holds the old file whole or the new one
    whole. A symlinked ``output`` keeps pointing at the file it named; an overwritten file keeps its permissions.
    A failure is one :class:`VcriticError` ("cannot write ..."), with ``hint`` or, where an old file stands, that it
    is as it was."""
    target = Path(os.path.realpath(output))
    try:
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".vcritic-new")
    except OSError as err:
        raise VcriticError(f"cannot write {output}: {err.strerror or err}", hint=hint) from None
    try:
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # as a plain open() would create it; mkstemp makes 0600
        with contextlib.suppress(OSError):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(err, OSError):
            unchanged = "the file is as it was" if target.exists() else None
            raise VcriticError(f"cannot write {output}: {err.strerror or err}", hint=hint or unchanged) from None
        raise
    return target

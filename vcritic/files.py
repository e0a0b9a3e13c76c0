"""Whole-file writes (a small output, e.g. a report page or a calibration, replaces its path in one step) and the
lock an output folder is held by for a whole run."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vcritic.errors import VcriticError


def check_replaceable(output: str | os.PathLike, *, hint: str | None = None) -> None:
    """Refuse an ``output`` that exists and is not a regular file, or a symlink to one: a FIFO, a device node, a
    socket. :func:`write_atomically` renames its new file over the path, which would replace the node itself (as
    root, ``/dev/full`` became an HTML page). Callers use it to refuse before any work; the writer checks again."""
    try:
        info = os.stat(output)  # follows a symlink: what it leads to is what would be replaced
    except FileNotFoundError:
        return
    except OSError as err:
        raise VcriticError(f"cannot use {output}: {err.strerror or err}", hint=hint) from None
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a file")
        via = " (through a symlink)" if os.path.islink(output) else ""
        raise VcriticError(
            f"{output} is not a regular file but {kind}{via}; vcritic replaces only regular files",
            hint=hint or "choose another file name (or - for stdout where the command offers it)",
        )


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def write_atomically(output: str | os.PathLike, data: bytes, *, hint: str | None = None) -> Path:
    """Write ``data`` beside ``output``, sync, and rename over it: the path holds the old file whole or the new one
    whole. Only a regular file is ever replaced (:func:`check_replaceable`): a symlink to one is written through
    (it keeps pointing at the file it named), anything else is refused. An overwritten file keeps its permissions.
    A failure is one :class:`VcriticError` ("cannot write ..."), with ``hint`` or, where an old file stands, that it
    is as it was."""
    check_replaceable(output, hint=hint)
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
        check_replaceable(target, hint=hint)  # again: what stands there may have changed while writing
        os.replace(temp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(err, OSError):
            unchanged = "the file is as it was" if target.exists() else None
            raise VcriticError(f"cannot write {output}: {err.strerror or err}", hint=hint or unchanged) from None
        raise
    return target


@contextlib.contextmanager
def locked_folder(folder: Path, *, flag: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` while the block runs, so a second vcritic run writing it is refused
    ("... is in use by another vcritic run (pid N)") instead of mixing its files with this one's. The folder is made
    if needed and removed again if this run made it and leaves it empty (a typo costs no ``--overwrite`` later).
    ``flag`` is the option that named it, for the hints. The kernel drops the lock when the process dies, so a
    killed run leaves none behind. Without ``fcntl`` (Windows), or where ``folder`` is a file (the caller's own
    check says so), nothing is locked."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock
        fcntl = None
    if fcntl is None or (folder.exists() and not folder.is_dir()):
        yield
        return
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except OSError as err:
        raise VcriticError(f"cannot create {folder}: {err.strerror}", hint=f"choose another {flag}") from None
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            pid = _lock_holder(fd)
            raise VcriticError(
                f"{folder} is in use by another vcritic run" + (f" (pid {pid})" if pid else ""),
                hint=f"wait for it to finish, or choose another {flag}",
            ) from None
        except OSError:
            pass  # a file system without locks (some network mounts): go on unlocked
        yield
    finally:
        os.close(fd)
        # Only the run that held the lock: another run may be writing a folder that is still empty.
        if created and held and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _lock_holder(fd: int) -> int | None:
    """The process holding a ``flock`` on ``fd``'s file, from Linux's /proc/locks; None where that cannot tell."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
        info = os.fstat(fd)
    except OSError:
        return None
    exact, by_inode = None, None
    for line in lines:
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":  # "->": a waiter, not the holder
            continue
        try:
            major, minor, inode = fields[5].split(":")
            pid = int(fields[4])
            if int(inode) != info.st_ino:
                continue
            by_inode = by_inode or pid
            if (int(major, 16), int(minor, 16)) == (os.major(info.st_dev), os.minor(info.st_dev)):
                exact = pid
        except ValueError:
            continue
    return exact or by_inode

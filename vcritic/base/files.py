"""File safety in one place: whole-file writes that replace their path in one step (bytes, text, JSON, or a
stream), the checks an output passes before any work (a folder, a missing folder, an input, a device, an existing
file), ``flock`` locks on a file or a whole output folder, and syncing a folder so a rename survives a power cut."""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from vcritic.errors import VcriticError

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

CAN_LOCK = fcntl is not None  # False on Windows, which also renames nothing over an open file


def lock(fd: int, busy: Callable[[], BaseException]) -> bool:
    """Take an exclusive ``flock`` on ``fd`` without waiting; raise ``busy()`` where another process holds it.
    Advisory, and dropped by the kernel when the process dies, so a killed run leaves no stale lock. False where
    nothing could be locked (Windows, a file system without locks such as some network mounts): go on unlocked."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise busy() from None
    except OSError:
        return False
    return True


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename or a new entry in ``folder`` survive a power cut, where the system allows syncing a folder
    (elsewhere the rename is still atomic, only not yet durable)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def same_file_as_input(path: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> str | None:
    """The input that ``path`` is (same device and inode: symlinks and hard links included), if any."""
    try:
        target = os.stat(path)
    except OSError:
        return None  # not there yet, so it cannot be an input
    for item in inputs:
        try:
            info = os.stat(item)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino):
            return os.fspath(item)
    return None


def check_output_file(
    output: Path,
    *,
    option: str = "-o",
    example: str,
    overwrite: bool | None,
    inputs: Iterable[str | os.PathLike] = (),
    writable: bool = False,
    regular_only: bool = True,
) -> None:
    """Refuse, before any work, an output file that cannot or may not be written: a folder (hint: ``example``),
    a missing parent folder, with ``writable`` a folder without write permission, one of the run's ``inputs``,
    with ``regular_only`` a FIFO or a device (:func:`check_replaceable`), and an existing file unless
    ``overwrite`` (None: the caller decides about an existing file itself)."""
    if output.is_dir():
        raise VcriticError(f"{option} {output} is a folder", hint=f"give a file name, e.g. {example}")
    if not output.parent.is_dir():
        there = output.parent.exists()
        problem = f"{output.parent} is not a folder" if there else f"folder {output.parent} does not exist"
        raise VcriticError(
            problem, hint=f"choose another {option}" if there else f"create it first, or choose another {option}"
        )
    if writable and not os.access(output.parent, os.W_OK):
        raise VcriticError(
            f"cannot write to folder {output.parent}: permission denied", hint=f"choose another {option}"
        )
    clash = same_file_as_input(output, inputs)
    if clash is not None:
        raise VcriticError(
            f"the output {output} is one of the inputs ({clash}); it would be overwritten",
            hint=f"choose another {option}",
        )
    if regular_only:
        check_replaceable(output, hint=f"choose another {option}, or {option} - for stdout")
    if overwrite is False and output.exists():
        raise VcriticError(
            f"{output} already exists",
            hint=f"pass --overwrite to replace it, or choose another {option}",
        )


def check_output_folder(out: Path, *, hint: str) -> None:
    """Refuse an output folder's path where something that is not a folder stands (``hint``: what to give)."""
    if out.exists() and not out.is_dir():
        raise VcriticError(f"{out} exists and is not a folder", hint=hint)


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
    with open_atomically(output, "wb", hint=hint) as handle:
        handle.write(data)
    return Path(os.path.realpath(output))


def write_text_atomically(output: str | os.PathLike, text: str, *, hint: str | None = None) -> Path:
    """:func:`write_atomically` for text, as UTF-8."""
    return write_atomically(output, text.encode("utf-8"), hint=hint)


def write_json_atomically(
    output: str | os.PathLike, value: Any, *, indent: int | None = 2, ensure_ascii: bool = True, hint: str | None = None
) -> Path:
    """:func:`write_atomically` for ``value`` as JSON (with ``indent``: indented, and a final newline)."""
    text = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii) + ("\n" if indent is not None else "")
    return write_text_atomically(output, text, hint=hint)


TEMP_SUFFIX = ".vcritic-new"  # a whole-file write's new file, beside its target until the rename


def leftover_temps(folder: Path, names: Iterable[str]) -> list[Path]:
    """The new files that whole-file writes of ``names`` in ``folder`` left behind when their process was killed
    before the rename (a failed write removes its own)."""
    return sorted(path for name in names for path in folder.glob(f".{glob.escape(name)}.*{TEMP_SUFFIX}"))


@contextlib.contextmanager
def open_atomically(
    output: str | os.PathLike,
    mode: str = "w",
    *,
    encoding: str | None = "utf-8",
    newline: str | None = None,
    hint: str | None = None,
) -> Iterator[IO[Any]]:
    """A handle (``mode`` "w" for text, "wb" for bytes) on a new file beside ``output`` that replaces it when the
    block ends, as :func:`write_atomically` does; for a file written as a stream (a CSV, a JSONL). If the block
    raises, ``output`` is left as it was and the new file is removed."""
    check_replaceable(output, hint=hint)
    target = Path(os.path.realpath(output))
    try:
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
    except OSError as err:
        raise VcriticError(f"cannot write {output}: {err.strerror or err}", hint=hint) from None
    try:
        try:
            mode_bits = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode_bits = 0o666 & ~umask  # as a plain open() would create it; mkstemp makes 0600
        with contextlib.suppress(OSError):
            os.fchmod(fd, mode_bits)
        with os.fdopen(fd, "wb") as raw:
            if "b" in mode:
                yield raw
            else:
                text = io.TextIOWrapper(raw, encoding=encoding, newline=newline)
                try:
                    yield text
                    text.flush()
                finally:
                    text.detach()  # raw is closed by its own block, once
            raw.flush()
            os.fsync(raw.fileno())
        check_replaceable(target, hint=hint)  # again: what stands there may have changed while writing
        os.replace(temp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(err, OSError):
            unchanged = "the file is as it was" if target.exists() else None
            raise VcriticError(f"cannot write {output}: {err.strerror or err}", hint=hint or unchanged) from None
        raise
    fsync_folder(target.parent)


@contextlib.contextmanager
def locked_folder(folder: Path, *, flag: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` while the block runs, so a second vcritic run writing it is refused
    ("... is in use by another vcritic run (pid N)") instead of mixing its files with this one's. The folder is made
    if needed and removed again if this run made it and leaves it empty (a typo costs no ``--overwrite`` later).
    ``flag`` is the option that named it, for the hints. The kernel drops the lock when the process dies, so a
    killed run leaves none behind. Without ``fcntl`` (Windows), or where ``folder`` is a file (the caller's own
    check says so), nothing is locked."""
    if fcntl is None or (folder.exists() and not folder.is_dir()):
        yield
        return
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except OSError as err:
        raise VcriticError(f"cannot create {folder}: {err.strerror}", hint=f"choose another {flag}") from None

    def busy() -> VcriticError:
        pid = _lock_holder(fd)
        return VcriticError(
            f"{folder} is in use by another vcritic run" + (f" (pid {pid})" if pid else ""),
            hint=f"wait for it to finish, or choose another {flag}",
        )

    held = False
    try:
        held = lock(fd, busy)  # False on a file system without locks (some network mounts): go on unlocked
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

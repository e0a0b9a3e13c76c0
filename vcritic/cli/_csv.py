"""The CSV a command writes (``score -o``, ``compare --pairs -o``, ``bench --out``): locked, crash-safe, resumable.

- Opened, locked and given its header before the model loads, so a bad path, a read-only folder, a full disk or a
  second run on the same file fails at once, not after loading.
- Locked for the whole run with ``flock`` (POSIX; advisory, released by the kernel when the process dies, so a
  killed run never leaves a stale lock). A new file is created with ``O_EXCL``, so two runs cannot both create it.
- Each row goes to the file in one ``write`` as soon as it is known and the file is fsynced every few seconds, so a
  killed run leaves a valid CSV whose last line is whole. A write that fails (full disk) is cut back to the last
  whole row and reported in one line; the rows before it stay.
- ``--resume`` reads the rows already there (cutting off a torn last row), and the command skips their inputs.
- An output that is one of the run's inputs is refused, whatever the flags.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import stat
import sys
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path

from vcritic.errors import VcriticError

FSYNC_INTERVAL_S = 5.0  # rows reach the OS at once; this bounds what a power cut (not a kill) can lose
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `yes | head` reports: the reader left, nothing failed here

try:
    import fcntl
except ImportError:  # Windows: no flock; O_EXCL still stops two runs creating the same file
    fcntl = None


def _is_stdout(path: Path | None) -> bool:
    return path is None or str(path) == "-"


def _encode_row(fieldnames: Sequence[str], row: dict[str, str]) -> bytes:
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n").writerow(row)
    return buffer.getvalue().encode("utf-8")


def _header(fieldnames: Sequence[str]) -> bytes:
    return _encode_row(fieldnames, {name: name for name in fieldnames})


def _same_file_as_input(path: Path, inputs: Iterable[str | os.PathLike]) -> str | None:
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


def _write_error(path: Path, err: OSError, rows: int) -> VcriticError:
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EFBIG: "the file is too large for this file system or limit",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }.get(err.errno, err.strerror or type(err).__name__)
    kept = f"; the {rows} row(s) before it are kept" if rows else ""
    return VcriticError(
        f"cannot write {path}: {reason}{kept}",
        hint="free space (or pick another -o), then run the same command with --resume" if rows else None,
    )


class CsvOutput:
    """A CSV output for one run: stdout, or a file locked until :meth:`close`. Use :func:`open_output`."""

    def __init__(self, path: Path | None, fieldnames: Sequence[str]):
        self.path = path
        self.fieldnames = list(fieldnames)
        self.fd: int | None = None
        self.created = False
        self.regular = False
        self.rows_before = 0  # rows found in the file by --resume
        self.rows_written = 0  # rows this run added
        self.torn_bytes = 0  # bytes of a torn last row that --resume cut off
        self._done: Counter = Counter()
        self._existing: list[dict[str, str]] = []
        self._offset = 0
        self._synced = time.monotonic()

    # -- resume --------------------------------------------------------------------------------------------------
    def take_done(self, key: Hashable) -> bool:
        """True (once per matching row) if the file already has a row for ``key``: the caller skips that input."""
        if self._done[key] > 0:
            self._done[key] -= 1
            return True
        return False

    def existing_rows(self) -> list[dict[str, str]]:
        """The rows --resume found in the file."""
        return list(self._existing)

    # -- writing -------------------------------------------------------------------------------------------------
    def write(self, row: dict[str, str]) -> None:
        """Append one row; it is in the file (or on stdout) when this returns."""
        data = _encode_row(self.fieldnames, row)
        if self.fd is None:
            self._write_stdout(data.decode("utf-8"))
        else:
            self._write_file(data)
            if time.monotonic() - self._synced > FSYNC_INTERVAL_S:
                self._fsync()
        self.rows_written += 1

    def _write_stdout(self, text: str) -> None:
        import typer

        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader (e.g. `| head`) is gone: stop quietly. Point stdout at /dev/null so Python's own flush at
            # exit does not raise again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(EXIT_BROKEN_PIPE) from None

    def _write_file(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError as err:
            if self.regular:
                with contextlib.suppress(OSError):  # never leave half a row behind
                    os.ftruncate(self.fd, self._offset)
            raise _write_error(self.path, err, self.rows_before + self.rows_written) from None
        self._offset += len(data)

    def _fsync(self) -> None:
        if self.fd is not None and self.regular:
            with contextlib.suppress(OSError):
                os.fsync(self.fd)
        self._synced = time.monotonic()

    def close(self) -> None:
        if self.fd is None:
            if _is_stdout(self.path):
                with contextlib.suppress(BrokenPipeError):
                    sys.stdout.flush()
            return
        self._fsync()
        os.close(self.fd)  # also drops the flock
        self.fd = None

    @property
    def total_rows(self) -> int:
        return self.rows_before + self.rows_written

    @property
    def label(self) -> str:
        return "stdout" if _is_stdout(self.path) else str(self.path)

    def __enter__(self) -> CsvOutput:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        import typer

        from vcritic.cli._output import stderr

        self.close()
        if kind is not None and self.created and self.total_rows == 0 and self.path is not None:
            # Nothing but our header: leave no file that would make the rerun say "already exists".
            with contextlib.suppress(OSError):
                self.path.unlink()
        if kind is KeyboardInterrupt:
            if _is_stdout(self.path):
                stderr.print(f"Interrupted: {self.rows_written} row(s) written to stdout.", markup=False)
            else:
                stderr.print(
                    f"Interrupted: {self.total_rows} row(s) in {self.path}"
                    + (f" ({self.rows_written} from this run)" if self.rows_before else "")
                    + ". Run the same command with --resume to continue.",
                    markup=False,
                )
            raise typer.Exit(EXIT_INTERRUPTED)
        return False


def open_output(
    path: Path | None,
    fieldnames: Sequence[str],
    *,
    overwrite: bool = False,
    resume: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    key: Callable[[dict[str, str]], Hashable] | None = None,
    option: str = "-o",
) -> CsvOutput:
    """Open, lock and prepare the output before the model loads; raise VcriticError naming any problem.

    ``None`` or ``-`` is stdout. With ``resume``, rows already in the file are read (``key`` of each is then
    answered by :meth:`CsvOutput.take_done`) and new rows are appended; the header must be exactly
    ``fieldnames``. ``inputs`` are files the run reads: the output may not be one of them.
    """
    out = CsvOutput(None if _is_stdout(path) else path, fieldnames)
    if out.path is None:
        if resume:
            raise VcriticError("--resume needs an output file", hint=f"give {option} FILE")
        out._write_stdout(_header(fieldnames).decode("utf-8"))
        return out

    if overwrite and resume:
        raise VcriticError("--overwrite and --resume exclude each other", hint="--resume keeps the rows already there")
    if path.is_dir():
        raise VcriticError(f"{option} {path} is a folder", hint="give a file name, e.g. -o scores.csv")
    clash = _same_file_as_input(path, inputs)
    if clash is not None:
        raise VcriticError(
            f"the output {path} is one of the inputs ({clash}); it would be overwritten",
            hint=f"choose another {option}",
        )
    if not path.parent.exists():
        raise VcriticError(f"folder {path.parent} does not exist", hint="create it first")

    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as err:
        raise VcriticError(f"cannot use {path}: {err.strerror}") from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        # A device or FIFO (/dev/stdout, a process substitution): nothing there to clobber, lock or resume.
        if resume:
            raise VcriticError(f"--resume needs a regular file, and {path} is not one")
        out.fd = _open(path, os.O_WRONLY, out)
        out._write_file(_header(fieldnames))
        return out
    if info is not None and not (overwrite or resume):
        raise VcriticError(
            f"{path} already exists",
            hint="pass --resume to continue it, --overwrite to replace it, or choose another " + option,
        )

    flags = os.O_RDWR | os.O_CREAT | (0 if info is not None else os.O_EXCL) | getattr(os, "O_CLOEXEC", 0)
    out.fd = _open(path, flags, out)
    out.regular = True
    out.created = info is None
    try:
        _lock(out.fd, path)
        if resume and os.fstat(out.fd).st_size > 0:
            _read_existing(out, key)
        else:
            os.ftruncate(out.fd, 0)
            out._offset = 0
            out._write_file(_header(fieldnames))
        os.lseek(out.fd, out._offset, os.SEEK_SET)
        out._fsync()
    except BaseException:
        out.__exit__(VcriticError, None, None)
        raise
    return out


def _open(path: Path, flags: int, out: CsvOutput) -> int:
    try:
        return os.open(path, flags, 0o666)
    except FileExistsError:
        raise VcriticError(
            f"{path} was created by another run just now", hint="choose another -o, or wait and use --resume"
        ) from None
    except OSError as err:
        raise _write_error(path, err, 0) from None


def _lock(fd: int, path: Path) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise VcriticError(
            f"{path} is being written by another vcritic run", hint="wait for it to finish, or choose another -o"
        ) from None
    except OSError:
        pass  # a file system without locks (some network mounts): go on, as without fcntl


def _read_existing(out: CsvOutput, key: Callable[[dict[str, str]], Hashable] | None) -> None:
    """Load the rows of a file being resumed and set the write offset after the last whole row."""
    size = os.fstat(out.fd).st_size
    os.lseek(out.fd, 0, os.SEEK_SET)
    data = b""
    while len(data) < size:
        chunk = os.read(out.fd, size - len(data))
        if not chunk:
            break
        data += chunk
    records, end = parse_whole_rows(data)
    if not records:  # a run killed before its header was whole
        os.ftruncate(out.fd, 0)
        out._offset = 0
        out._write_file(_header(out.fieldnames))
        return
    header = records[0]
    if header != out.fieldnames:
        raise VcriticError(
            f"cannot resume {out.path}: its columns ({','.join(header)}) differ from what this run writes "
            f"({','.join(out.fieldnames)})",
            hint="resume with the same options that started it, or write to another file",
        )
    rows = []
    for number, values in enumerate(records[1:], start=2):
        if len(values) != len(header):
            raise VcriticError(
                f"cannot resume {out.path}: record {number} has {len(values)} fields, not {len(header)}",
                hint="fix or delete that line, then resume",
            )
        rows.append(dict(zip(header, values, strict=True)))
    if end < size:
        os.ftruncate(out.fd, end)
        out.torn_bytes = size - end
    out._offset = end
    out._existing = rows
    out.rows_before = len(rows)
    if key is not None:
        out._done = Counter(key(row) for row in rows)


def parse_whole_rows(data: bytes) -> tuple[list[list[str]], int]:
    """The complete CSV records in ``data`` and the byte offset just after the last one.

    A record counts only once its closing newline is there; a torn tail (an unterminated quote, half a UTF-8
    character, a row without its newline) is left out, so appending after ``offset`` continues a valid CSV.
    """
    records: list[list[str]] = []
    offset = consumed = 0
    pending: list[str] = []
    while (newline := data.find(b"\n", consumed)) >= 0:  # only \n ends a line: a quoted \r is data
        line, consumed = data[consumed : newline + 1], newline + 1
        try:
            pending.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            break
        try:
            parsed = list(csv.reader(pending, strict=True))
        except csv.Error:
            continue  # a quoted field spanning lines, not closed yet
        if len(parsed) == 1:
            if parsed[0]:  # a blank line is no record
                records.append(parsed[0])
            offset = consumed
            pending = []
    return records, offset

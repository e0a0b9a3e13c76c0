"""The CSV a command writes (``score -o``, ``compare --pairs -o``, ``bench --out``): locked, crash-safe, resumable.

- Opened, locked and given its header before the model loads, so a bad path, a read-only folder, a full disk or a
  second run on the same file fails at once, not after loading.
- Locked for the whole run with ``flock`` (POSIX; advisory, released by the kernel when the process dies, so a
  killed run never leaves a stale lock). A new file is created with ``O_EXCL``, so two runs cannot both create it.
- Each row goes to the file in one ``write`` as soon as it is known and the file is fsynced every few seconds, so a
  killed run leaves a valid CSV whose last line is whole. A write that fails (full disk) is cut back to the last
  whole row and reported in one line; the rows before it stay.
- ``--overwrite`` leaves the old file as it is until the first new row: then a new file (header and that row) is
  written beside it, locked, and renamed over it. A run that fails or is stopped before its first row (a bad model,
  Ctrl-C while loading) leaves the old rows where they were.
- ``--resume`` reads the rows already there (cutting off a torn last row; a tail of more than
  :data:`MAX_TORN_BYTES` that is not whole rows is refused, the file untouched); :meth:`CsvOutput.match` pairs them
  with the run's inputs (by the path as written, or the same file). Inputs with a scored row are skipped; an error row
  is dropped and its input done again, the file being rewritten without those rows by the same rename at the first
  new row; rows that match no input are kept.
- An output that is one of the run's inputs is refused, whatever the flags.
- On stdout the header goes out with the first row (or at a normal end with no rows), so a run that fails before
  scoring anything (a bad model) prints nothing there: a pipe reader never sees a lone header from a failed run.
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
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path

from vcritic.base import files
from vcritic.base.csvio import DictWriter, cell_name, cell_text
from vcritic.cli._exit import EXIT_INTERRUPTED
from vcritic.errors import UsageError, VcriticError

FSYNC_INTERVAL_S = 5.0  # rows reach the OS at once; this bounds what a power cut (not a kill) can lose
# A killed run leaves at most one torn row: --resume cuts off no more than this (a row is a path, numbers and an
# error message, well under it); a longer tail that is not whole rows is a damaged file, refused untouched.
MAX_TORN_BYTES = 1 << 20


def _is_stdout(path: Path | None) -> bool:
    return path is None or str(path) == "-"


def _encode_row(fieldnames: Sequence[str], row: dict[str, str]) -> bytes:
    buffer = io.StringIO()
    DictWriter(buffer, fieldnames).writerow(row)
    return buffer.getvalue().encode("utf-8")


def _header(fieldnames: Sequence[str]) -> bytes:
    return _encode_row(fieldnames, {name: name for name in fieldnames})


def path_names(text: str, bases: Iterable[Path] = ()) -> list[Hashable]:
    """What a path written in a CSV matches for ``--resume``: the text as written, and the file it names (a relative
    path resolved against each of ``bases``), so ``./a.jpg``, ``a.jpg`` and ``/abs/a.jpg`` are one image."""
    names: list[Hashable] = [("as written", cell_text(text))]  # as a row holds it (csvio: not-UTF-8 bytes as \\xNN)
    for spelling in dict.fromkeys([text, cell_name(text) or text]):  # a row's text, and the name it escapes
        given = Path(spelling).expanduser()
        for base in [Path("/")] if given.is_absolute() else bases:
            names.append(("file", os.path.normcase(os.path.realpath(base / given))))
    return names


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _temp_path(target: Path) -> Path:
    """Where the new file is written before it is renamed over ``target``: beside it (same file system), hidden.
    Only the run holding the lock on ``target`` touches it."""
    return target.with_name(f".{target.name}.vcritic-new")


def _write_error(path: Path, err: OSError, rows: int, unchanged: bool = False) -> VcriticError:
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EFBIG: "the file is too large for this file system or limit",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }.get(err.errno, err.strerror or type(err).__name__)
    kept = f"; the {rows} row(s) before it are kept" if rows else ""
    if unchanged:
        kept = "; the file is as it was" + (f" ({rows} row(s))" if rows else "")
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
        self.retried = 0  # error rows --resume dropped because their input is done again
        self.unmatched = 0  # rows --resume keeps that match no input of this run
        self._existing: list[dict[str, str]] = []
        self._offset = 0
        self._synced = time.monotonic()
        self._real: Path | None = None  # the file itself (-o may be a symlink to it)
        # What the file must hold before the first new row, written by replacing the file at that row (see
        # _replace): the header (--overwrite), or the header and the rows kept (--resume dropping error rows).
        self._pending: bytes | None = None
        self._overwriting = False
        self._replaced_fd: int | None = None  # the file before a replace, kept locked until close
        self._stdout_header = False  # stdout's header is still to be written (with the first row)

    # -- resume --------------------------------------------------------------------------------------------------
    def match(
        self,
        items: Sequence,
        item_names: Callable[[object], Iterable[Hashable]],
        row_names: Callable[[dict[str, str]], Iterable[Hashable]],
    ) -> list[dict[str, str] | None]:
        """For each of this run's inputs, its row already in the file (skip the input) or None (do it).

        An input and a row match when they share a name (e.g. :func:`path_names`). Each row serves one input; a
        scored row is preferred to an error row. An error row matched this way is dropped: its input is done again
        and the file is rewritten without it at the first new row. Rows that match no input stay. Call once,
        before the first :meth:`write`.
        """
        rows = self._existing
        if not rows:
            return [None] * len(items)
        by_name: dict[Hashable, list[int]] = defaultdict(list)
        for number, row in enumerate(rows):
            for name in dict.fromkeys(row_names(row)):
                by_name[name].append(number)
        claimed = [False] * len(rows)
        retried: set[int] = set()
        found: list[dict[str, str] | None] = []
        for item in items:
            candidates = sorted({n for name in item_names(item) for n in by_name.get(name, ()) if not claimed[n]})
            scored = [n for n in candidates if not rows[n].get("error")]
            pick = scored[0] if scored else candidates[0] if candidates else None
            if pick is not None:
                claimed[pick] = True
                if not scored:
                    retried.add(pick)
            found.append(rows[pick] if scored else None)
        self.retried, self.unmatched = len(retried), claimed.count(False)
        if retried:
            self._existing = [row for n, row in enumerate(rows) if n not in retried]
            self._pending = _header(self.fieldnames) + b"".join(
                _encode_row(self.fieldnames, row) for row in self._existing
            )
        return found

    def existing_rows(self) -> list[dict[str, str]]:
        """The rows --resume keeps from the file (after :meth:`match`, without the error rows done again)."""
        return list(self._existing)

    def resume_note(self, verb: str = "scored") -> str:
        """For the summary: how many earlier error rows were done again, and how many rows match no input."""
        note = ""
        if self.retried:
            note += f"; {self.retried} earlier error row(s) {verb} again"
        if self.unmatched:
            note += f"; {self.unmatched} row(s) match no input of this run (kept)"
        return note

    # -- writing -------------------------------------------------------------------------------------------------
    def write(self, row: dict[str, str]) -> None:
        """Append one row; it is in the file (or on stdout) when this returns."""
        data = _encode_row(self.fieldnames, row)
        if self.fd is None:
            if self._stdout_header:
                data, self._stdout_header = _header(self.fieldnames) + data, False
            self._write_stdout(data.decode("utf-8"))
        else:
            self._write_file(data)
            if time.monotonic() - self._synced > FSYNC_INTERVAL_S:
                self._fsync()
        self.rows_written += 1

    def _write_stdout(self, text: str) -> None:
        from vcritic.cli._output import reader_left

        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            reader_left()

    def _write_file(self, data: bytes) -> None:
        if self._pending is not None:
            self._replace(self._pending + data)
            return
        try:
            _write_all(self.fd, data)
        except OSError as err:
            if self.regular:
                with contextlib.suppress(OSError):  # never leave half a row behind
                    os.ftruncate(self.fd, self._offset)
            raise _write_error(self.path, err, self.rows_before + self.rows_written) from None
        self._offset += len(data)

    def _replace(self, data: bytes) -> None:
        """Put ``data`` in place of the file in one step: written to a new file beside it, which is locked, synced
        and renamed over it. At every moment the path holds the old file whole or the new one whole. The old file
        stays open and locked until :meth:`close`, so a run that opened it just before the rename cannot lock it
        and write to a file no longer there."""
        temp = _temp_path(self._real)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)  # left by a run killed mid-replace: we hold the lock, so it is no one's now
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(temp, flags, 0o666)
        except OSError as err:
            raise _write_error(self.path, err, self.rows_before, unchanged=True) from None
        try:
            with contextlib.suppress(OSError):
                os.fchmod(fd, stat.S_IMODE(os.fstat(self.fd).st_mode))
            _lock(fd, temp)
            _write_all(fd, data)
            os.fsync(fd)
            if not files.CAN_LOCK:  # Windows renames nothing over an open file, and has no flock to keep
                os.close(self.fd)
                self.fd = None
            os.replace(temp, self._real)
        except BaseException as err:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            if isinstance(err, OSError):
                raise _write_error(self.path, err, self.rows_before, unchanged=True) from None
            raise
        self._replaced_fd, self.fd = self.fd, fd
        self._pending, self._overwriting = None, False
        self._offset = len(data)
        self.rows_before = len(self._existing)
        self._synced = time.monotonic()
        files.fsync_folder(self._real.parent)

    def _fsync(self) -> None:
        if self.fd is not None and self.regular:
            with contextlib.suppress(OSError):
                os.fsync(self.fd)
        self._synced = time.monotonic()

    def close(self, finished: bool = True) -> None:
        """Sync and unlock. ``finished``: the run ended normally, so a file still waiting for its first row (a run
        that wrote none) gets what it must hold; otherwise it stays as it was."""
        if self.fd is None:
            if finished and self._stdout_header:  # a run with no rows still gives a valid (empty) CSV
                self._stdout_header = False
                self._write_stdout(_header(self.fieldnames).decode("utf-8"))
            if _is_stdout(self.path):
                with contextlib.suppress(BrokenPipeError):
                    sys.stdout.flush()
            return
        try:
            if finished and self._pending is not None:
                self._write_file(b"")
            self._fsync()
        finally:
            for fd in (self.fd, self._replaced_fd):
                if fd is not None:
                    os.close(fd)  # also drops the flock
            self.fd = self._replaced_fd = None

    def _is_ours(self) -> bool:
        """Whether the path still names the file this run holds (not one another run put there)."""
        try:
            mine, there = os.fstat(self.fd), os.stat(self.path)
        except (OSError, TypeError):
            return False
        return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)

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

        untouched = self._overwriting  # --overwrite, and no new row yet: the old file is still there, whole
        removed = False
        if kind is not None and self.created and self.total_rows == 0 and self._is_ours():
            # Nothing but our header: leave no file that would make the rerun say "already exists".
            with contextlib.suppress(OSError):
                self.path.unlink()
                removed = True
        self.close(finished=kind is None)
        if kind is KeyboardInterrupt:
            if _is_stdout(self.path):
                stderr.print(f"Interrupted: {self.rows_written} row(s) written to stdout.", markup=False)
            elif untouched or removed:
                outcome = "is as it was" if untouched else "was not created"
                stderr.print(f"Interrupted before the first row was written: {self.path} {outcome}.", markup=False)
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
    option: str = "-o",
) -> CsvOutput:
    """Open, lock and prepare the output before the model loads; raise VcriticError naming any problem.

    ``None`` or ``-`` is stdout. With ``overwrite``, an existing file is replaced at the first new row, not before.
    With ``resume``, rows already in the file are read (then call :meth:`CsvOutput.match`) and new rows are
    appended; the header must be exactly ``fieldnames``. ``inputs`` are files the run reads: the output may not be
    one of them.
    """
    out = CsvOutput(None if _is_stdout(path) else path, fieldnames)
    if out.path is None:
        if resume:
            raise UsageError("--resume needs an output file", hint=f"give {option} FILE")
        out._stdout_header = True
        return out

    if overwrite and resume:
        raise UsageError("--overwrite and --resume exclude each other", hint="--resume keeps the rows already there")
    # A folder, a missing folder or an input is refused; a device or FIFO is written to (see below).
    files.check_output_file(path, option=option, example="-o scores.csv", overwrite=None, inputs=inputs,
                            regular_only=False)  # fmt: skip

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
    out._real = Path(os.path.realpath(path))
    out._overwriting = overwrite and info is not None  # nothing of the old file is touched until the first row
    try:
        _lock(out.fd, path)
        if not out._is_ours():  # replaced by another run between our open and our lock
            raise _busy(path)
        out.created = info is None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_temp_path(out._real))  # left by a run killed while replacing the file
        if resume and os.fstat(out.fd).st_size > 0:
            _read_existing(out)
        elif out._overwriting and os.fstat(out.fd).st_size > 0:
            out._pending = _header(fieldnames)  # the old rows stay until the first new one
        else:
            out._overwriting = False
            os.ftruncate(out.fd, 0)
            out._offset = 0
            out._write_file(_header(fieldnames))
        os.lseek(out.fd, out._offset, os.SEEK_SET)
        out._fsync()
    except BaseException as err:
        out.__exit__(type(err), err, None)  # Ctrl-C here too says what became of the file
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


def _busy(path: Path) -> VcriticError:
    return VcriticError(
        f"{path} is being written by another vcritic run", hint="wait for it to finish, or choose another -o"
    )


def _lock(fd: int, path: Path) -> None:
    """Lock for the whole run (:func:`vcritic.base.files.lock`); without flock (Windows), O_EXCL still stops two runs
    creating the same file."""
    files.lock(fd, lambda: _busy(path))


def _read_existing(out: CsvOutput) -> None:
    """Load the rows of a file being resumed and set the write offset after the last whole row. A file over
    :data:`vcritic.base.limits.MAX_RESUME_BYTES` is refused before reading (every row is held in memory)."""
    from vcritic.base.limits import MAX_RESUME_BYTES, size_text, too_large

    size = os.fstat(out.fd).st_size
    if size > MAX_RESUME_BYTES:
        raise too_large(
            out.path,
            size,
            MAX_RESUME_BYTES,
            "a CSV to --resume",
            hint="check that this is the output you meant; to go on, write the remaining inputs to another file",
        )
    os.lseek(out.fd, 0, os.SEEK_SET)
    data = b""
    while len(data) < size:
        chunk = os.read(out.fd, size - len(data))
        if not chunk:
            break
        data += chunk
    records, end = parse_whole_rows(data)
    if size - end > MAX_TORN_BYTES:  # more than a killed run leaves: not ours to cut off
        line = data.count(b"\n", 0, end) + 1
        raise VcriticError(
            f"cannot resume {out.path}: from line {line} on, its last {size_text(size - end)} are not whole CSV rows "
            "(a stray quote, or text that is not UTF-8?)",
            hint="fix or delete the lines from there, then resume; the file is left as it is",
        )
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


def parse_whole_rows(data: bytes) -> tuple[list[list[str]], int]:
    """The complete CSV records in ``data`` and the byte offset just after the last one.

    A record counts only once its closing newline is there; a torn tail (an unterminated quote, half a UTF-8
    character, a row without its newline) is left out, so appending after ``offset`` continues a valid CSV. So is
    everything from a record that is not valid CSV on. One pass: a stray quote early in a large file made the
    earlier reader parse the lines after it again at every line (time growing with the square of the rows).
    """
    records: list[list[str]] = []
    offset = consumed = 0

    def lines():
        """``data``'s whole lines as text, up to the first that is not UTF-8; ``consumed`` follows them."""
        nonlocal consumed
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:  # only \n ends a line: a quoted \r is data
            try:
                text = data[start : newline + 1].decode("utf-8")
            except UnicodeDecodeError:
                return
            start = consumed = newline + 1
            yield text

    # csv.reader asks for a record's lines one at a time and no further, so after each record ``consumed`` is
    # where it ends; at the end of the lines inside a quoted field (strict) it raises: the tail is not whole.
    with contextlib.suppress(csv.Error):
        for record in csv.reader(lines(), strict=True):
            if record:  # a blank line is no record
                records.append(record)
            offset = consumed
    return records, offset

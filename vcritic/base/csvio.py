"""CSV as vcritic writes it, in every file: UTF-8, ``\\n`` line ends and minimal quoting, and a cell holding a bare
``\\r`` quoted too.

Python's csv writer quotes a cell only for the characters of its own line terminator, so with ``\\n`` a file name
holding ``\\r`` (legal on Linux) goes out bare, and every CSV reader, Python's included, ends the row there. A row
with such a cell is written with every cell quoted; all other rows are as ``csv`` writes them.

A file name that is not valid UTF-8 (also legal on Linux: Python holds its stray bytes as lone surrogates, e.g.
``a\\udcff.jpg``) cannot be UTF-8 text as it is. Each such byte is written as ``\\xNN`` (:func:`cell_text`:
``a\\xff.jpg``), so the file stays valid UTF-8 for every reader, and :func:`cell_name` turns the cell back into the
name on disk.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")


def cell_text(value: str) -> str:
    """``value`` as UTF-8 text: unchanged where it is, else each byte a file name held that is not UTF-8 (a lone
    surrogate from ``os.fsdecode``) as ``\\xNN``, and any other lone surrogate as ``\\udNNN``."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    out = []
    for char in value:
        if "\udc80" <= char <= "\udcff":  # a byte os.fsdecode could not decode
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif "\ud800" <= char <= "\udfff":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def cell_name(text: str) -> str | None:
    """The file name a cell written by :func:`cell_text` stands for, when it has ``\\xNN`` escapes (else None). A
    name that really holds a backslash and ``x80``-``xff`` reads both ways: :func:`vcritic.cli._csv.path_names`
    tries both."""
    if not _ESCAPED_BYTE.search(text):
        return None
    parts = _ESCAPED_BYTE.split(text)
    data = b"".join(
        bytes([int(part, 16)]) if i % 2 else part.encode("utf-8", "surrogateescape") for i, part in enumerate(parts)
    )
    return os.fsdecode(data)


class Writer:
    """``csv.writer(handle, lineterminator="\\n")`` that also quotes ``\\r``."""

    def __init__(self, handle: TextIO):
        self._minimal = csv.writer(handle, lineterminator="\n")
        self._quoted = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, values: Iterable[Any]) -> None:
        values = [cell_text(value) if isinstance(value, str) else value for value in values]
        bare_cr = any(isinstance(value, str) and "\r" in value for value in values)
        (self._quoted if bare_cr else self._minimal).writerow(values)


class DictWriter:
    """``csv.DictWriter(handle, fieldnames, lineterminator="\\n")`` that also quotes ``\\r``: missing keys are
    empty cells, unknown keys an error."""

    def __init__(self, handle: TextIO, fieldnames: Sequence[str]):
        self.fieldnames = list(fieldnames)
        self._writer = Writer(handle)

    def writeheader(self) -> None:
        self._writer.writerow(self.fieldnames)

    def writerow(self, row: Mapping[str, Any]) -> None:
        unknown = [key for key in row if key not in self.fieldnames]
        if unknown:
            raise ValueError(f"dict contains fields not in fieldnames: {', '.join(map(repr, unknown))}")
        self._writer.writerow("" if row.get(name) is None else row[name] for name in self.fieldnames)


class OneRowEach:
    """One row per image of a table that gives images values (``calibrate``'s table, ``bench --predictions``): a
    row repeating an earlier row's values for the same image is counted (:meth:`note`) and skipped; one giving it
    other values is a usage error, as which of the two is right cannot be known."""

    def __init__(self, path: str | os.PathLike, what: str, show: Callable[[tuple], str] | None = None):
        self.path, self.what = path, what  # what: the values compared, as the error names them ("mos or rating")
        self.show = show or (lambda values: ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values))
        self.repeated = 0
        self._seen: dict[Hashable, tuple[int, tuple]] = {}

    def first(self, key: Hashable, image: str, line: int, values: tuple) -> bool:
        """Whether this is the first row for ``key`` (the image); a later row with other ``values`` is refused
        naming ``image`` and both lines."""
        from vcritic.errors import UsageError

        if key not in self._seen:
            self._seen[key] = (line, values)
            return True
        earlier, before = self._seen[key]
        if before != values:
            raise UsageError(
                f"{self.path}: {image} appears on lines {earlier} and {line} with different {self.what} "
                f"({self.show(before)} and {self.show(values)})",
                hint="keep one row per image",
            )
        self.repeated += 1
        return False

    def note(self) -> str | None:
        """The stderr note for the repeated rows, or None."""
        if not self.repeated:
            return None
        return f"{Path(self.path).name}: {self.repeated} repeated row(s) (same image, same values) counted once"

"""CSV as vcritic writes it, in every file: ``\\n`` line ends and minimal quoting, and a cell holding a bare ``\\r``
quoted too.

Python's csv writer quotes a cell only for the characters of its own line terminator, so with ``\\n`` a file name
holding ``\\r`` (legal on Linux) goes out bare, and every CSV reader, Python's included, ends the row there. A row
with such a cell is written with every cell quoted; all other rows are as ``csv`` writes them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO


class Writer:
    """``csv.writer(handle, lineterminator="\\n")`` that also quotes ``\\r``."""

    def __init__(self, handle: TextIO):
        self._minimal = csv.writer(handle, lineterminator="\n")
        self._quoted = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, values: Iterable[Any]) -> None:
        values = list(values)
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

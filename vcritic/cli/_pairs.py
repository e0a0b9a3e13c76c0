"""The pairs CSV a user gives: ``compare --pairs`` reads it, ``rank --from-pairs`` reads one compare (or rank's
``--pairs-out``) wrote. Columns: :mod:`vcritic.readout.schema`."""

from __future__ import annotations

import csv
from pathlib import Path

from vcritic.errors import VcriticError
from vcritic.readout.schema import PAIR_INPUT_COLUMNS


def read_pairs(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of a pairs CSV (must have columns a and b, each filled in every row) and its column names."""
    from vcritic.base.limits import MAX_TABLE_BYTES, check_input
    from vcritic.datasets.records import strict_csv_rows

    hint = "it must be a UTF-8 CSV with a header naming columns a and b, one pair per row"
    check_input(path, MAX_TABLE_BYTES, "a pairs file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            fieldnames, rows = strict_csv_rows(path, reader)
    except FileNotFoundError:
        raise VcriticError(f"pairs file not found: {path}", hint="check the path") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise VcriticError(f"cannot read pairs file {path}: {err}", hint=hint) from None
    missing = [column for column in PAIR_INPUT_COLUMNS if column not in fieldnames]
    if missing:
        raise VcriticError(
            f"{path} has no column {' or '.join(missing)} (columns: {', '.join(fieldnames) or 'none'})",
            hint="the header must name the two image columns a and b",
        )
    for number, row in enumerate(rows, start=2):
        empty = [column for column in PAIR_INPUT_COLUMNS if not row[column].strip()]
        if empty:
            raise VcriticError(f"{path}: pair {number - 1} has no image in column {' and '.join(empty)}", hint=hint)
    if not rows:
        raise VcriticError(f"{path} has no pairs", hint="add rows with two image paths each")
    return rows, fieldnames

"""What a report is made from: a scores CSV (``vcritic score``), a ranking CSV (``vcritic rank``) or a ``vcritic
bench --out`` folder, recognised by their columns and files, and read back into plain rows."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from vcritic.errors import VcriticError
from vcritic.readout.schema import MOS_SCALE, RANK_REQUIRED, READOUTS

EXPECTED = (
    "a scores CSV from `vcritic score` (path, mos, ...), a ranking CSV from `vcritic rank` (rank, path, strength, "
    "se, ...) or a `vcritic bench --out` folder (metrics.json or summary.json)"
)


@dataclass
class Row:
    """One image of a scores or ranking CSV: its path as written, its numbers, and the error where it has one."""

    line: int
    path: str
    values: dict[str, float | None]
    error: str | None


@dataclass
class Table:
    """A scores CSV (``kind`` 'scores', sorted by ``key``) or a ranking CSV (``kind`` 'ranking')."""

    kind: str
    source: Path
    columns: list[str]
    rows: list[Row]
    key: str  # the column images are ordered by: a read-out, or strength

    @cached_property
    def ranked(self) -> list[Row]:
        """Rows with a value for ``key`` and no error, best first (ties keep file order)."""
        usable = [row for row in self.rows if row.error is None and row.values.get(self.key) is not None]
        if self.kind == "ranking":
            return sorted(usable, key=lambda row: (row.values.get("rank") is None, row.values.get("rank") or 0))
        return sorted(usable, key=lambda row: -row.values[self.key])

    @cached_property
    def failed(self) -> list[Row]:
        """Rows with an error or without a value for ``key``, in file order."""
        return [row for row in self.rows if row.error is not None or row.values.get(self.key) is None]


@dataclass
class Dataset:
    """One dataset of a bench folder: its metrics.json content and (predicted, true) MOS pairs."""

    name: str
    metrics: dict
    points: list[tuple[float, float]] = field(default_factory=list)
    predictions: Path | None = None  # None: no predictions.csv in the folder


@dataclass
class BenchRun:
    source: Path
    datasets: list[Dataset]


def load(source: Path) -> Table | BenchRun:
    """The report's input, recognised by its files or columns; anything else is refused naming what is expected."""
    if source.is_dir():
        return _bench(source)
    if not source.exists():
        raise VcriticError(f"{source} does not exist", hint=f"give {EXPECTED}")
    header, rows = _read_csv(source)
    if all(column in header for column in RANK_REQUIRED):
        return _table(source, "ranking", header, rows, ("rank", "strength", "se", "comparisons", "win_rate"))
    readouts = [column for column in READOUTS if column in header]
    if "path" in header and readouts:
        scales = {(row.get("scale") or MOS_SCALE).strip() for _, row in rows}
        if scales - {MOS_SCALE}:
            raise VcriticError(
                f"{source} has rows whose scale is {', '.join(sorted(scales - {MOS_SCALE}))}, not {MOS_SCALE}",
                hint="a report reads scores as vcritic score writes them, 0-100",
            )
        return _table(source, "scores", header, rows, [*readouts, "mos_std"])
    found = ", ".join(header) or "none"
    raise VcriticError(f"{source} is not a file vcritic report reads (columns: {found})", hint=f"give {EXPECTED}")


def _read_csv(source: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line, row) pairs. Not records.strict_csv_rows: that refuses a record spanning lines, and vcritic
    writes one for a file name holding a newline (quoted, as CSV allows)."""
    import csv

    from vcritic.base.limits import MAX_TABLE_BYTES, check_input

    hint = f"give {EXPECTED}"
    rows = []
    check_input(source, MAX_TABLE_BYTES, "a predictions CSV")
    try:
        with source.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            header = [name.strip() for name in next(reader, [])]
            duplicates = sorted({name for name in header if name and header.count(name) > 1})
            if duplicates:
                raise VcriticError(f"{source}: column {', '.join(map(repr, duplicates))} appears more than once",
                                   hint=hint)  # fmt: skip
            line = reader.line_num + 1
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    if len(cells) != len(header):
                        raise VcriticError(f"{source}, line {line}: {len(cells)} cells where the header has "
                                           f"{len(header)}", hint=hint)  # fmt: skip
                    rows.append((line, dict(zip(header, cells, strict=True))))
                line = reader.line_num + 1
    except UnicodeDecodeError:
        raise VcriticError(f"{source} is not a UTF-8 text CSV file", hint=hint) from None
    except csv.Error as err:
        raise VcriticError(f"{source} is not a valid CSV file: {err}", hint=hint) from None
    except OSError as err:
        raise VcriticError(f"cannot read {source}: {err.strerror or err}", hint=hint) from None
    return header, rows


def _table(source: Path, kind: str, header: list[str], rows: list[tuple[int, dict[str, str]]], numeric) -> Table:
    numeric = [column for column in numeric if column in header]
    parsed = []
    for line, row in rows:
        values = {column: _number(source, line, column, row[column]) for column in numeric}
        error = (row.get("error") or "").strip() or None
        parsed.append(Row(line, row["path"], values, error))
    key = "strength" if kind == "ranking" else numeric[0]
    return Table(kind, source, header, parsed, key)


def _number(source: Path, line: int, column: str, text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise VcriticError(f"{source}, line {line}: {column} {text!r} is not a number",
                           hint="vcritic writes numbers, or an empty cell where there is none")  # fmt: skip
    return value


def _bench(folder: Path) -> BenchRun:
    summary, single = folder / "summary.json", folder / "metrics.json"
    if summary.is_file():
        datasets = _json(summary).get("datasets")
        if not isinstance(datasets, dict):
            raise VcriticError(f"{summary} has no 'datasets' object", hint="it is written by vcritic bench all --out")
        found = [Dataset(name, metrics, predictions=folder / name / "predictions.csv")
                 for name, metrics in datasets.items() if isinstance(metrics, dict)]  # fmt: skip
    elif single.is_file():
        metrics = _json(single)
        found = [Dataset(str(metrics.get("dataset", folder.name)), metrics, predictions=folder / "predictions.csv")]
    else:
        raise VcriticError(f"{folder} is a folder without metrics.json or summary.json", hint=f"give {EXPECTED}")
    for dataset in found:
        dataset.points = _points(dataset.predictions)
        if not dataset.predictions.is_file():
            dataset.predictions = None
    return BenchRun(folder, found)


def _json(path: Path) -> dict:
    from vcritic.base.limits import MAX_JSON_BYTES, check_input

    check_input(path, MAX_JSON_BYTES, "a metrics file")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise VcriticError(f"cannot read {path}: {err}", hint="it is written by vcritic bench --out") from None
    if not isinstance(value, dict):
        raise VcriticError(f"{path} is not a JSON object", hint="it is written by vcritic bench --out")
    return value


def _points(predictions: Path) -> list[tuple[float, float]]:
    """(predicted, true) MOS of every scored row of a bench predictions.csv; none if the file is not there."""
    if not predictions.is_file():
        return []
    header, rows = _read_csv(predictions)
    if "mos" not in header or "mos_true" not in header:
        raise VcriticError(
            f"{predictions} has no mos and mos_true columns", hint="it is written by vcritic bench --out"
        )
    points = []
    for line, row in rows:
        if (row.get("error") or "").strip():
            continue
        predicted = _number(predictions, line, "mos", row["mos"])
        true = _number(predictions, line, "mos_true", row["mos_true"])
        if predicted is not None and true is not None:
            points.append((predicted, true))
    return points

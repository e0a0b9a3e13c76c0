"""What every dataset loader yields (:class:`Record`), and the file readers they share.

Loaders read the annotation files exactly as the dataset authors distribute them (CSV, XLSX, MAT). Anything
missing is a :class:`~vcritic.errors.VcriticError` that names the file and what was expected in it, never a
``KeyError`` from deep inside a parser.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcritic.base.docs_url import docs_page
from vcritic.base.limits import check_input
from vcritic.errors import VcriticError
from vcritic.readout.schema import ATTRIBUTES  # noqa: F401  (the loaders import it from here)

DOCS_HINT = f"the expected layout: {docs_page('guides/benchmarks', 'getting-the-datasets')}"

# Excel annotation workbooks (SPAQ's is 0.5 MB, expanding to a few MB): checked from the zip directory before parsing.
MAX_XLSX_EXPANDED = 512 << 20  # bytes, all members together
MAX_XLSX_RATIO = 200  # expanded to compressed, for members over 1 MiB (XML compresses 5-20 to 1; zeros 1000)
# A .mat file, read whole by scipy: LIVE-C's hold one score or one file name per image, tens of KB.
MAX_MAT_BYTES = 16 << 20


@dataclass(frozen=True)
class Record:
    """One rated image.

    ``mos`` is on vcritic's 0-100 scale, higher is better, mapped linearly from the dataset's documented score range
    (not from the min/max of the data, so it never depends on which images are loaded). ``image`` is the image's
    name as the annotation file gives it: the stable id used in split files.
    """

    path: Path
    mos: float
    dataset: str
    image: str
    attributes: Mapping[str, float] = field(default_factory=dict)
    ai_generated: bool | None = None
    ref_id: str | None = None
    official_split: str | None = None  # "train" / "val" / "test" where the authors publish a split
    mos_std: float | None = None  # spread of the individual ratings, 0-100 scale, where the file gives it


def rescale(value: float, low: float, high: float) -> float:
    """``value`` from the range [low, high] to [0, 100], linearly; values outside the range stay outside."""
    return (float(value) - low) * 100.0 / (high - low)


def rescale_spread(value: float, low: float, high: float) -> float:
    """A standard deviation on the range [low, high] in points of the 0-100 scale (no offset, only the scale)."""
    return float(value) * 100.0 / (high - low)


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise VcriticError(f"{path} not found (expected {what})", hint=DOCS_HINT)
    return path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise VcriticError(f"folder {path} not found (expected {what})", hint=DOCS_HINT)
    return path


def first_dir(root: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``root/name`` that is a folder; an error naming all of them if none is."""
    for name in names:
        if (root / name).is_dir():
            return root / name
    tried = ", ".join(f"{name}/" for name in names)
    raise VcriticError(f"no image folder in {root} (expected {what}: one of {tried})", hint=DOCS_HINT)


def _normalise_header(name: Any) -> str:
    return str(name if name is not None else "").strip().lstrip("\ufeff")


def read_csv_rows(path: Path, required: Iterable[str], what: str) -> list[dict[str, str]]:
    """Rows of a CSV file with a header; fails naming the file and the missing columns."""
    return read_csv_table(path, required, what)[1]


def read_csv_table(path: Path, required: Iterable[str], what: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV file; fails naming the file (and line) for missing or duplicate columns, a row
    with more or fewer cells than the header, and a quote left open (which would merge records silently)."""
    require_file(path, what)
    from vcritic.base.limits import MAX_TABLE_BYTES, check_input

    check_input(path, MAX_TABLE_BYTES, "a CSV file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header, rows = strict_csv_rows(path, csv.reader(handle, strict=True))
    except UnicodeDecodeError:
        raise VcriticError(f"{path} is not a UTF-8 text CSV file", hint=DOCS_HINT) from None
    except csv.Error as err:
        raise VcriticError(f"{path} is not a valid CSV file: {err}", hint=DOCS_HINT) from None
    check_columns(path, header, required)
    return header, rows


def _records(path: Path, reader):
    """The reader's records; a quote still open at the end of the file is named with the line it was opened on."""
    line = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            if "unexpected end of data" in str(err):
                raise VcriticError(
                    f"{path}: the record starting on line {line + 1} runs to the end of the file: a quote is not "
                    "closed",
                    hint='close the quote (or remove the stray " character) on that line',
                ) from None
            raise VcriticError(
                f"{path}, line {reader.line_num}: bad quoting ({err}), e.g. a quote that is not closed",
                hint='close the quote (or remove the stray " character) on that line or the one before',
            ) from None
        line = reader.line_num
        yield cells


def strict_csv_rows(path: Path, reader) -> tuple[list[str], list[dict[str, str]]]:
    header = [_normalise_header(h) for h in next(reader, [])]
    named = [h for h in header if h]
    duplicates = sorted({h for h in named if named.count(h) > 1})
    if duplicates:
        raise VcriticError(f"{path}: column {', '.join(map(repr, duplicates))} appears more than once in the header")
    rows = []
    line = reader.line_num
    for cells in _records(path, reader):
        start, line = line + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank line
        if line > start:
            raise VcriticError(
                f"{path}: the record starting on line {start} runs to line {line}: a quote is not closed",
                hint='close the quote (or remove the stray " character) on that line',
            )
        if len(cells) != len(header):
            raise VcriticError(
                f"{path}, line {start}: {len(cells)} cells where the header has {len(header)}",
                hint="every row needs one cell per column (quote cells that contain commas)",
            )
        rows.append(dict(zip(header, cells, strict=True)))
    return header, rows


def check_columns(path: Path, header: Sequence[str], required: Iterable[str]) -> None:
    missing = [column for column in required if column not in header]
    if missing:
        found = ", ".join(h for h in header if h) or "none"
        raise VcriticError(
            f"{path} has no column {', '.join(repr(m) for m in missing)} (found: {found})",
            hint=f"expected the file as distributed by the dataset authors; {DOCS_HINT}",
        )


def pick_column(path: Path, header: Sequence[str], candidates: Sequence[str], what: str) -> str:
    """The first header (case-insensitive) among ``candidates``; an error naming them if none is there."""
    lowered = {h.lower(): h for h in header}
    for candidate in candidates:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    found = ", ".join(h for h in header if h) or "none"
    raise VcriticError(
        f"{path} has no {what} column (looked for {', '.join(candidates)}; found: {found})", hint=DOCS_HINT
    )


def read_xlsx_rows(path: Path, what: str) -> list[tuple[Any, ...]]:
    """All rows of the first sheet of an .xlsx file as tuples of cell values (openpyxl, read-only), after
    :func:`check_xlsx` found nothing hostile in it."""
    require_file(path, what)
    check_xlsx(path)
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises zipfile/KeyError/InvalidFileException/ParseError for bad files
        raise VcriticError(f"{path} is not a readable .xlsx file: {_first_line(err)}", hint=DOCS_HINT) from None
    try:
        if not workbook.worksheets:
            raise VcriticError(f"{path} has no worksheet", hint=f"expected {what} on its first sheet")
        sheet = workbook.worksheets[0]
        return [tuple(row) for row in sheet.iter_rows(values_only=True) if any(v is not None for v in row)]
    except VcriticError:
        raise
    except Exception as err:  # read-only sheets are parsed while iterating: malformed XML shows up here
        raise VcriticError(f"{path} is not a readable .xlsx file: {_first_line(err)}", hint=DOCS_HINT) from None
    finally:
        workbook.close()


def check_xlsx(path: Path) -> None:
    """Refuse a workbook that would cost unbounded time or memory, or reach outside itself, before any XML is
    parsed: from the zip directory, more than :data:`MAX_XLSX_EXPANDED` bytes in all, or a large member compressed
    more than :data:`MAX_XLSX_RATIO` to 1 (a zip bomb); then any XML part with a DOCTYPE, which a spreadsheet never
    needs and which entity expansion ("billion laughs") and external entities (XXE) require. ``zipfile`` stops a
    member at the size the directory declares, so a directory that lies cannot expand further."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            expanded = sum(member.file_size for member in members)
            if expanded > MAX_XLSX_EXPANDED:
                raise VcriticError(
                    f"{path} expands to {expanded / 2**20:.0f} MiB, over the {MAX_XLSX_EXPANDED / 2**20:.0f} MiB an "
                    "annotation workbook may hold (a zip bomb?)",
                    hint="use the file as the dataset authors distribute it",
                )
            for member in members:
                ratio = member.file_size / max(member.compress_size, 1)
                if member.file_size > 1 << 20 and ratio > MAX_XLSX_RATIO:
                    raise VcriticError(
                        f"{path}: {member.filename} is compressed {ratio:.0f} to 1, over the {MAX_XLSX_RATIO} to 1 "
                        "of real data (a zip bomb?)",
                        hint="use the file as the dataset authors distribute it",
                    )
            for member in members:
                if member.filename.lower().endswith((".xml", ".rels")) and _declares_doctype(archive, member):
                    raise VcriticError(
                        f"{path}: {member.filename} declares XML entities (DOCTYPE), which a workbook never needs "
                        "and which can expand without bound or read other files",
                        hint="use the file as the dataset authors distribute it",
                    )
    except VcriticError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as err:
        raise VcriticError(f"{path} is not a readable .xlsx file: {_first_line(err)}", hint=DOCS_HINT) from None


def _declares_doctype(archive, member) -> bool:
    """Whether an XML part holds ``<!DOCTYPE`` (or ``<!ENTITY``), read in chunks; UTF-16 parts are decoded."""
    tail, encoding = b"", None
    with archive.open(member) as handle:
        while chunk := handle.read(1 << 20):
            if encoding is None:
                encoding = "utf-16" if chunk[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8"
            text = tail + chunk
            probe = text.decode(encoding, errors="ignore").encode() if encoding == "utf-16" else text
            if b"<!DOCTYPE" in probe or b"<!ENTITY" in probe:
                return True
            tail = text[-32:] if encoding == "utf-8" else b""
    return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_mat_array(path: Path, key: str, what: str):
    """The array stored under ``key`` in a MATLAB .mat file (scipy.io)."""
    require_file(path, what)
    check_input(path, MAX_MAT_BYTES, what)
    from scipy.io import loadmat

    try:
        contents = loadmat(path)
    except Exception as err:  # scipy raises ValueError/TypeError/MatReadError for bad files
        raise VcriticError(f"{path} is not a readable .mat file: {err}", hint=DOCS_HINT) from None
    if key not in contents:
        keys = ", ".join(k for k in contents if not k.startswith("__")) or "none"
        raise VcriticError(f"{path} has no variable {key!r} (found: {keys})", hint=f"expected {what}")
    return contents[key]


def parse_float(value: Any, path: Path, where: str) -> float:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        raise VcriticError(f"{path}: {where} is {value!r}, not a number", hint=DOCS_HINT) from None
    if not math.isfinite(number):
        raise VcriticError(f"{path}: {where} is {value!r}, not a finite number", hint=DOCS_HINT)
    return number


def parse_score(value: Any, path: Path, where: str, score_range: tuple[float, float]) -> float:
    """A score cell, refused (naming file and place) when it is not a number or lies outside ``score_range``, the
    range the dataset documents: such a value means a wrong file or a wrong range, not a very good image."""
    number = parse_float(value, path, where)
    low, high = score_range
    if not low <= number <= high:
        raise VcriticError(
            f"{path}: {where} is {number:g}, outside the documented range {low:g}-{high:g}",
            hint="check the file (or, for a CSV manifest, --mos-range)",
        )
    return number


def parse_bool(value: Any, path: Path, where: str) -> bool | None:
    """``ai_generated`` cells: true/false, yes/no, 1/0; empty means unknown."""
    text = str(value if value is not None else "").strip().lower()
    if text == "":
        return None
    if text in ("1", "1.0", "true", "yes", "y", "ai", "generated"):
        return True
    if text in ("0", "0.0", "false", "no", "n", "photo", "real"):
        return False
    raise VcriticError(f"{path}: {where} is {value!r}", hint="use true/false, yes/no or 1/0")


def image_path(folder: Path, name: str) -> Path:
    """An image named in an annotation file, with either slash style, under ``folder``."""
    return folder / Path(*name.replace("\\", "/").split("/"))


def files_by_name(folder: Path) -> dict[str, Path]:
    """File name -> path for every file below ``folder`` (first one wins), for datasets that use sub-folders."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            found.setdefault(name, Path(dirpath) / name)
    return found


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry: how to find a dataset under a root folder, and how to read it."""

    name: str  # registry key, also the conventional sub-folder name under --root
    title: str  # as the paper writes it
    load: Any  # Callable[[Path], list[Record]]
    markers: tuple[str, ...]  # annotation files (relative to the dataset folder); any one identifies the dataset
    folders: tuple[str, ...] = ()  # other folder names the dataset is found under (the authors' own names)
    aliases: tuple[str, ...] = ()  # other names accepted on the command line
    mos_range: tuple[float, float] = (0.0, 100.0)  # documented range of the raw score, mapped to 0-100
    mos_source: str = ""  # which file/column the MOS comes from
    ai_generated: bool = False
    split_by_reference: bool = False  # KADID-10k: split by pristine reference image, not by image
    official_split: bool = False  # the authors publish a train/val/test split (KonIQ-10k)
    url: str = ""

    def locate(self, root: Path) -> Path | None:
        """The dataset folder: ``root`` itself, or a sub-folder of it named as in ``folders``; None if absent."""
        if self.is_at(root):
            return root
        if not root.is_dir():
            return None
        wanted = {normalise_name(n) for n in (self.name, *self.folders)}
        for child in sorted(root.iterdir()):
            if child.is_dir() and normalise_name(child.name) in wanted and self.is_at(child):
                return child
        return None

    def is_at(self, folder: Path) -> bool:
        return any((folder / marker).is_file() for marker in self.markers)


def normalise_name(name: str) -> str:
    """Dataset and folder names compare case- and punctuation-insensitively: KonIQ-10k == koniq10k."""
    return "".join(ch for ch in name.lower() if ch.isalnum())

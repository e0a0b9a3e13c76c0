"""Hostile inputs: property tests of the readers (the corpus of every bad file scored in one run is in
tests/e2e/test_bad_inputs_cli.py).

The readers (images, pairs CSV, annotation CSV) may only return a result or raise ``VcriticError``: never another
exception, never a hang.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vcritic.base.csvio import Writer
from vcritic.base.images import load_image
from vcritic.cli.compare import read_pairs
from vcritic.datasets.manifest import load_manifest
from vcritic.datasets.records import read_csv_table
from vcritic.errors import VcriticError

# -- property tests ----------------------------------------------------------------------------------------------
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
cells = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@PROPERTY
@given(
    data=st.binary(max_size=600), prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a"])
)
def test_image_loader_on_random_bytes_returns_an_image_or_our_error(data, prefix):
    with tempfile.NamedTemporaryFile(suffix=".img") as handle:
        handle.write(prefix + data)
        handle.flush()
        try:
            image = load_image(handle.name)
        except VcriticError as err:
            assert err.message and "\n" not in err.message
        else:
            assert image.mode == "RGB"


def _write(text: str) -> Path:
    descriptor, name = tempfile.mkstemp(suffix=".csv")
    with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return Path(name)


@PROPERTY
@given(rows=st.lists(st.lists(cells, max_size=4), max_size=6), header=st.sampled_from(["a,b", "a,b,label", "b,a"]))
def test_pairs_reader_on_random_rows_returns_pairs_or_our_error(rows, header):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path = _write(header + "\n" + buffer.getvalue())
    try:
        pairs, fieldnames = read_pairs(path)
    except VcriticError as err:
        assert "\n" not in err.message
    else:
        assert {"a", "b"} <= set(fieldnames) and pairs
        assert all(row["a"].strip() and row["b"].strip() and len(row) == len(fieldnames) for row in pairs)
    finally:
        path.unlink()


@PROPERTY
@given(text=st.text(max_size=300))
def test_csv_readers_on_random_text_return_rows_or_our_error(text):
    path = _write(text)
    try:
        for read in (
            lambda: read_csv_table(path, ("name", "mos"), "an annotation file"),
            lambda: read_pairs(path),
            lambda: load_manifest(path, (1.0, 5.0)),
        ):
            with contextlib.suppress(VcriticError):
                read()
    finally:
        path.unlink()


@PROPERTY
@given(scores=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), cells), min_size=1, max_size=5))
def test_manifest_scores_are_finite_and_in_range_or_refused(scores):
    lines = [f"img{i}.png,{score}" for i, score in enumerate(scores)]
    with tempfile.TemporaryDirectory() as folder:  # one per example, removed after it (mkdtemp left ~1,300 behind)
        path = Path(folder) / "manifest.csv"
        path.write_text("path,mos\n" + "\n".join(lines) + "\n", encoding="utf-8")
        try:
            records = load_manifest(path, (1.0, 5.0))
        except VcriticError as err:
            assert "\n" not in err.message
        else:
            assert all(0.0 <= r.mos <= 100.0 for r in records)


# -- named cases -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\nx.png\n", "line 2: 1 cells where the header has 2"),
        ("a,b\nx.png,y.png,z.png\n", "line 2: 3 cells where the header has 2"),
        ("a,b\nx.png,\n", "pair 1 has no image in column b"),
        ("a,a,b\nx,y,z\n", "column 'a' appears more than once in the header"),
        ('a,b\n"x.png,y.png\nz.png,w.png\n', "a quote is not closed"),
        ("a,b\n", "has no pairs"),
    ],
)
def test_bad_pairs_files_are_refused_naming_the_line(tmp_path, text, message):
    path = tmp_path / "pairs.csv"
    path.write_text(text)
    with pytest.raises(VcriticError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_pairs(path)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("inf", "line 3, mos is 'inf', not a finite number"),
        ("nan", "line 3, mos is 'nan', not a finite number"),
        ("7.5", "line 3, mos is 7.5, outside the documented range 1-5"),
        ("0", "line 3, mos is 0, outside the documented range 1-5"),
    ],
)
def test_manifest_scores_outside_the_range_are_refused_naming_file_and_line(tmp_path, cell, message):
    path = tmp_path / "m.csv"
    path.write_text(f"path,mos\na.png,3\nb.png,{cell}\n")
    with pytest.raises(VcriticError, match=message) as caught:
        load_manifest(path, (1.0, 5.0))
    assert str(path) in caught.value.message


def test_an_unclosed_quote_in_an_annotation_file_does_not_merge_records(tmp_path):
    from support.dataset_fixtures import make_koniq10k

    from vcritic.datasets import load_dataset

    fixture = make_koniq10k(tmp_path, sets=False)
    scores = fixture.folder / "koniq10k_scores_and_distributions.csv"
    lines = scores.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace('.jpg"', ".jpg", 1)  # the name's closing quote gone: it now runs into line 5
    scores.write_text("".join(lines))
    with pytest.raises(VcriticError, match="line 5: bad quoting"):
        load_dataset("koniq10k", fixture.folder)


@PROPERTY
@given(rows=st.lists(st.lists(cells, min_size=1, max_size=4), min_size=1, max_size=6))
def test_every_csv_vcritic_writes_reads_back_cell_for_cell(rows):
    """A cell may hold anything a file name can: commas, quotes, newlines and a bare carriage return, which
    Python's csv writer leaves unquoted with "\n" line ends (every reader then ends the row there)."""
    buffer = io.StringIO()
    writer = Writer(buffer)
    for row in rows:
        writer.writerow(row)
    text = buffer.getvalue()
    assert list(csv.reader(io.StringIO(text, newline=""))) == rows


@PROPERTY
@given(rows=st.lists(st.lists(cells, min_size=2, max_size=2), min_size=1, max_size=8), cut=st.floats(0, 1))
def test_resume_reader_keeps_exactly_the_whole_rows_of_a_torn_file(rows, cut):
    from vcritic.cli._csv import parse_whole_rows

    buffer = io.StringIO()
    writer = Writer(buffer)  # as vcritic writes its outputs
    for row in [["path", "error"], *rows]:
        writer.writerow(row)
    data = buffer.getvalue().encode("utf-8")
    torn = data[: int(cut * len(data))]  # a write cut off anywhere, even inside a quoted newline or a UTF-8 char
    records, end = parse_whole_rows(torn)
    expected = [["path", "error"], *rows]
    assert records == expected[: len(records)]  # a prefix of what was written, nothing merged or invented
    assert end <= len(torn) and torn[:end] == data[:end]
    if torn == data:
        assert records == expected and end == len(data)
    assert parse_whole_rows(torn[:end]) == (records, end)  # what resume keeps reads back the same

"""``vcritic report``: a self-contained HTML page of a scores CSV, a ranking CSV or a bench --out folder."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from vcritic.base.files import check_output_file, write_atomically
from vcritic.report import MAX_IMAGES, THUMBNAIL_SIZE

EPILOG = (
    "INPUT is recognised by its columns or files: a scores CSV (vcritic score, any --tasks: thumbnails best and "
    "worst first with their scores, a histogram, the rows that could not be scored), a ranking CSV (vcritic rank: "
    "thumbnails by rank with strength ± se) or a vcritic bench --out folder (SRCC/PLCC table and a predicted-vs-"
    "true scatter per dataset). No model is loaded. The page is one HTML file with no script and nothing fetched "
    "from the network: thumbnails are embedded JPEGs, plots inline SVG. Relative image paths are looked up from "
    "the current folder, then from the CSV's folder; a missing or unreadable image shows a placeholder. Exit "
    "status: 0 written; 1 bad input or output; 2 usage error."
)


def report(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT", help="A scores CSV (vcritic score), a ranking CSV (vcritic rank) or a bench --out folder."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The HTML file to write, or - for stdout.", show_default=False)
    ],
    max_images: Annotated[
        int,
        typer.Option(
            "--max-images",
            min=0,
            help="Show at most this many best and this many worst images (all of them when there are no more than "
            "twice as many); the page says how many it left out.",
        ),
    ] = MAX_IMAGES,
    thumbnail_size: Annotated[
        int, typer.Option("--thumbnail-size", min=16, max=1024, help="Longer side of each thumbnail, in pixels.")
    ] = THUMBNAIL_SIZE,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output file (in one step, once the page is made).")
    ] = False,
) -> None:
    """Make a self-contained HTML report of scores, a ranking or a benchmark run (no model needed)."""
    from vcritic.cli._output import stderr
    from vcritic.report.inputs import BenchRun, load
    from vcritic.report.page import render

    to_stdout = str(output) == "-"
    if not to_stdout:
        _check_output(output, source, overwrite)
    data = load(source)
    page = render(data, max_images=max_images, thumbnail_size=thumbnail_size)
    if to_stdout:
        _write_stdout(page)
        where = "stdout"
    else:
        write_atomically(output, page.encode("utf-8"))
        where = str(output)
    if isinstance(data, BenchRun):
        shown = f"{len(data.datasets)} dataset(s)"
    else:
        ranked = len(data.ranked)
        shown = f"{min(ranked, 2 * max_images)} of {ranked} image(s) shown"
        if data.failed:
            shown += f", {len(data.failed)} without a score listed"
    stderr.print(f"Report ({shown}, {len(page.encode('utf-8')) / 1e6:.2f} MB) -> {where}", markup=False)


def _inputs(source: Path) -> list[Path]:
    """The files a report reads (besides images), which the output must not replace."""
    if not source.is_dir():
        return [source]
    files = [source / name for name in ("metrics.json", "summary.json", "predictions.csv")]
    with contextlib.suppress(OSError):  # an unreadable folder is refused when it is read, in one line
        files += [child / "predictions.csv" for child in source.iterdir() if child.is_dir()]
    return files


def _check_output(output: Path, source: Path, overwrite: bool) -> None:
    """Refuse a bad output before any work: a folder, a missing folder, an input, or an existing file."""
    check_output_file(output, example="-o report.html", overwrite=overwrite, inputs=_inputs(source), writable=True)


def _write_stdout(page: str) -> None:
    from vcritic.cli._output import reader_left

    try:
        sys.stdout.write(page)
        sys.stdout.flush()
    except BrokenPipeError:
        reader_left()

"""``vcritic score``: MOS for every image in files, folders and globs, streamed to CSV."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from vcritic.cli._options import (
    AdapterOpt,
    AllowPickleOpt,
    BatchSizeOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    RevisionOpt,
    TasksOpt,
    TrustRemoteCodeOpt,
    WorkersOpt,
)

EXIT_PARTIAL = 3

EPILOG = (
    "Output columns: path, mos (0-100, higher is better), mos_std (spread of the model's rating distribution, "
    "same 0-100 scale); with --tasks attributes: brightness, colorfulness, contrast, noisiness, sharpness (0-100, "
    "higher = more of it, as SPAQ's raters scored it) each with a _std column; with --tasks authenticity: "
    "p_ai_generated (0-1); then scale (always '0-100') and error (why a file could not be scored; empty otherwise). "
    "Exit status: 0 every image scored; 3 finished, but some rows have an error; 1 nothing was scored "
    "(bad model, bad option, no images); 2 usage error."
)


def score(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="CSV file to write; '-' or leave out for stdout.", show_default=False),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the output file if it exists.")] = False,
    tasks: TasksOpt = "mos",
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    revision: RevisionOpt = None,
    batch_size: BatchSizeOpt = 8,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    trust_remote_code: TrustRemoteCodeOpt = False,
    allow_pickle: AllowPickleOpt = False,
) -> None:
    """Score image quality: MOS on a 0-100 scale (higher is better) for each image, as CSV; --tasks adds the five
    attributes and P(AI-generated).

    Rows are written as batches finish. A file that cannot be read gets a row with an error and the run goes on.
    """
    from vcritic.cli._csv import check_output, csv_output
    from vcritic.cli._output import make_progress, stderr
    from vcritic.errors import VcriticError
    from vcritic.images import find_images
    from vcritic.tasks import parse_tasks

    wanted = parse_tasks(tasks)
    if not wanted:
        raise VcriticError("--tasks none leaves nothing to score", hint="use mos, attributes, authenticity or all")
    paths = find_images(inputs)
    if not paths:
        raise VcriticError("no images found in the given inputs", hint="folders are searched for common image types")
    check_output(output, overwrite)

    from vcritic.cli._model import load_for_command
    from vcritic.scoring import score_columns, score_paths

    critic = load_for_command(
        model,
        adapter=adapter,
        revision=revision,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
    )
    scored: list[float] = []
    done = failed = 0
    started = time.perf_counter()
    with csv_output(output, score_columns(wanted)) as writer, make_progress() as progress:
        task = progress.add_task("Scoring", total=len(paths), rate="")
        for row in score_paths(critic, paths, tasks=wanted, batch_size=batch_size, workers=workers):
            writer.writerow(row.fields(wanted))
            if row.error:
                failed += 1
            else:
                done += 1
                if row.mos is not None:
                    scored.append(row.mos)
            elapsed = time.perf_counter() - started
            progress.update(task, advance=1, rate=f"{(done + failed) / max(elapsed, 1e-9):.1f} img/s")
    elapsed = time.perf_counter() - started
    summary = f"Scored {done} of {len(paths)} images in {elapsed:.1f} s ({len(paths) / elapsed:.1f} img/s)"
    if scored:
        summary += f"; MOS (0-100) mean {sum(scored) / len(scored):.1f}, min {min(scored):.1f}, max {max(scored):.1f}"
    if output is not None and str(output) != "-":
        summary += f" -> {output}"
    stderr.print(summary)
    if failed:
        stderr.print(f"[yellow]{failed} file(s) could not be scored; see the error column.[/]")
        raise typer.Exit(EXIT_PARTIAL if done else 1)

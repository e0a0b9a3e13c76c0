"""``vcritic score``: MOS for every image in files, folders and globs, streamed to CSV."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from vcritic.cli._calibration import check_calibration_model, read_calibration
from vcritic.cli._exit import EXIT_PARTIAL
from vcritic.cli._options import (
    CalibrationOpt,
    ForceCalibrationModelOpt,
    OverwriteOpt,
    TasksOpt,
    model_options,
)
from vcritic.inference.model_spec import ModelSpec

EPILOG = (
    "Output columns: path, mos (0-100, higher is better), mos_std (spread of the model's rating distribution, "
    "same 0-100 scale); with --calibration: mos_calibrated (the MOS on the calibration's target scale) and "
    "calibrated_scale (that scale, e.g. 'KonIQ-10k MOS (1-5)'); with --tasks attributes: brightness, colorfulness, "
    "contrast, noisiness, sharpness (0-100, higher = more of it, as SPAQ's raters scored it) each with a _std "
    "column; with --tasks authenticity: p_ai_generated (0-1); untrained (only when a judge is asked for tasks it "
    "was never trained for, e.g. attributes from a quality-only judge: those tasks, comma-separated); then scale "
    "(always '0-100': the scale of mos and the attributes) and error (why a file could not be scored; empty "
    "otherwise). "
    "Exit status: 0 every image scored; 3 finished, but some rows have an error; 1 nothing was scored "
    "(bad model, bad option, no images); 2 usage error."
)


@model_options()
def score(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="CSV file to write; '-' or leave out for stdout.", show_default=False),
    ] = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an earlier run: keep the scored rows in -o and score the other images, and again those "
            "whose row is an error. A row counts for an image with the same path as written, or the same file.",
        ),
    ] = False,
    tasks: TasksOpt = "mos",
    spec: ModelSpec = ModelSpec(),
    calibration_file: CalibrationOpt = None,
    force_calibration_model: ForceCalibrationModelOpt = False,
) -> None:
    """Score image quality: MOS on a 0-100 scale (higher is better) for each image, as CSV; --tasks adds the five
    attributes and P(AI-generated).

    Each row is written as soon as its batch finishes; a killed run leaves a valid CSV that --resume continues. A
    file that cannot be read gets a row with an error and the run goes on.
    """
    from vcritic.base.images import require_images, unsearched_note
    from vcritic.cli._csv import open_output, path_names
    from vcritic.cli._model import default_for_command
    from vcritic.cli._output import make_progress, stderr
    from vcritic.errors import UsageError
    from vcritic.model.judges import judge_for, untrained_note
    from vcritic.readout.schema import score_columns
    from vcritic.readout.tasks import parse_tasks

    wanted = parse_tasks(tasks)
    if not wanted:
        raise UsageError("--tasks none leaves nothing to score", hint="use mos, attributes, authenticity or all")
    # Known before loading (a preset, a trained folder's vcritic.json, --readout): the CSV header is written first.
    model_name = spec.model or default_for_command(spec.device, announce=False)
    judge = judge_for(model_name, spec.readout)
    untrained = bool(judge.untrained(wanted))
    calibration = read_calibration(calibration_file, wanted, model_name, spec, force_calibration_model)
    skipped: list[Path] = []
    unsearched: list[tuple[Path, str]] = []
    paths = require_images(inputs, skipped, unsearched)
    from vcritic.engine.batches import BatchPlan
    from vcritic.pipeline.distributed import lead, team_for

    team = team_for(spec.device, spec.device_map)  # several processes under accelerate launch: each scores a shard

    def load():
        from vcritic.cli._model import load_for_command

        return load_for_command(spec.on(team.device(spec.device)) if team else spec)

    plan = BatchPlan(spec.batch_size)
    if team is not None and not team.is_main:
        team.follow(load)  # process 0 hands out the work, or says stop when it refused to start
        return
    with lead(team):
        columns = score_columns(wanted, calibrated=calibration is not None, untrained=untrained)
        inputs = [*paths, *([calibration.path] if calibration else [])]
        with open_output(output, columns, overwrite=overwrite, resume=resume, inputs=inputs) as out:
            # A row written from another folder, or as ./a.jpg, a.jpg or /abs/a.jpg, names the same image.
            bases = [Path.cwd(), Path(os.path.abspath(output)).parent] if resume else []
            done = out.match(paths, lambda p: path_names(str(p), bases[:1]), lambda row: path_names(row["path"], bases))
            todo = [path for path, row in zip(paths, done, strict=True) if row is None]
            previous = out.existing_rows()
            if calibration is not None:
                _check_calibrated_rows(previous, calibration, output)
            if resume:
                stderr.print(
                    f"Resuming {output}: {len(previous)} row(s) already there, {len(todo)} image(s) to go"
                    + (f" ({out.retried} earlier error row(s) scored again)" if out.retried else "")
                    + (f" (cut off a torn last line of {out.torn_bytes} bytes)" if out.torn_bytes else ""),
                    markup=False,
                )
            scored = [float(row["mos"]) for row in previous if row.get("mos") and not row.get("error")]
            failed = sum(1 for row in previous if row.get("error"))
            ok = len(previous) - failed
            started = time.perf_counter()
            critic = None
            if todo:
                from vcritic.pipeline.scoring import score_paths

                critic = team.load(load) if team else load()
                note = untrained_note(critic.judge, wanted, critic.source)
                if note:
                    stderr.print(note, style="yellow", markup=False)
                if calibration is not None:  # now with the commit loading found
                    check_calibration_model(calibration, critic, spec.revision, spec.adapter, force_calibration_model)
                started = time.perf_counter()
                with make_progress() as progress:
                    task = progress.add_task("Scoring", total=len(todo), rate="")
                    run = team.score_paths if team else score_paths  # the team: every process scores a shard
                    rows = run(critic, todo, tasks=wanted, batch_size=plan, workers=spec.workers)
                    for done, row in enumerate(rows, start=1):
                        out.write(row.fields(wanted, calibration, untrained=untrained))
                        if row.error:
                            failed += 1
                        else:
                            ok += 1
                            if row.mos is not None:
                                scored.append(row.mos)
                        rate = done / max(time.perf_counter() - started, 1e-9)
                        progress.update(task, advance=1, rate=f"{rate:.1f} img/s")
    elapsed = time.perf_counter() - started
    total = out.total_rows
    summary = f"Scored {ok} of {total} images"
    if todo:
        processes = f", {team.size} processes" if team else ""
        shapes = f", {critic.fixed_shapes.describe()}" if critic.fixed_shapes else ""
        summary += (f" in {elapsed:.1f} s ({len(todo) / max(elapsed, 1e-9):.1f} img/s, {plan.describe()}{shapes}"
                    f"{processes})")  # fmt: skip
    if scored:
        summary += f"; MOS (0-100) mean {sum(scored) / len(scored):.1f}, min {min(scored):.1f}, max {max(scored):.1f}"
    if scored and calibration is not None:
        summary += f", {calibration.label} mean {sum(calibration.apply(scored)) / len(scored):.2f}"
    if out.path is not None:
        summary += f" -> {out.path}"
    stderr.print(summary + out.resume_note("scored"), markup=False)
    if critic is not None:
        stderr.print(f"Model: {critic.loaded}", markup=False)
    if unsearched:
        stderr.print(unsearched_note(unsearched), markup=False)
    if skipped:
        stderr.print(f"Not scored: {len(skipped)} file(s) in the folders are not of an image type Pillow opens "
                     f"(e.g. {skipped[0]})", markup=False)  # fmt: skip
    if failed:
        stderr.print(f"{failed} file(s) could not be scored; see the error column.", style="yellow", markup=False)
        raise typer.Exit(EXIT_PARTIAL if ok else 1)


def _check_calibrated_rows(rows, calibration, output) -> None:
    """--resume with --calibration: the rows already there must carry this calibration's values."""
    from vcritic.errors import VcriticError
    from vcritic.readout.schema import format_number

    for row in rows:
        if not row.get("mos") or row.get("error"):
            continue
        value = format_number(calibration.apply(float(row["mos"])))
        if row.get("calibrated_scale") != calibration.label or row.get("mos_calibrated") != value:
            raise VcriticError(
                f"cannot resume {output}: its row for {row['path']} was calibrated otherwise than with "
                f"{calibration.path} ({row.get('mos_calibrated')} {row.get('calibrated_scale')!r}, not {value} "
                f"{calibration.label!r})",
                hint="resume with the calibration it was written with, or write a new file",
            )

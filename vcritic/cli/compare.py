"""``vcritic compare``: which of two images has better quality, or many pairs from a CSV in one model load."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Annotated

import typer

from vcritic.cli._exit import EXIT_PARTIAL
from vcritic.cli._model import load_for_command
from vcritic.cli._options import OverwriteOpt, json_flag, model_options
from vcritic.cli._pairs import read_pairs
from vcritic.errors import UsageError, VcriticError
from vcritic.inference.model_spec import ModelSpec
from vcritic.readout.schema import verdict

EPILOG = (
    "P(A better) is read from the model's answer-word probabilities with the pair shown in both orders and "
    "averaged, so compare A B and compare B A always sum to 1. With --pairs, the CSV needs columns a and b "
    "(relative paths are taken from the CSV's folder); other columns are copied to the output, followed by "
    "p_a_better, better (a, b or tie) and error. Under 'accelerate launch -m vcritic compare --pairs ...' the "
    "processes share the pairs; the first one writes the CSV. Exit status: 0 done; 3 done, but some pairs have an "
    "error; 1 nothing compared; 2 usage error."
)


JsonOpt = json_flag("Print the result of A vs B as JSON.")


@model_options(without=("readout",))  # a pair is asked with vcritic's own question, whatever the judge's read-out
def compare(
    image_a: Annotated[Path | None, typer.Argument(help="First image (A).", show_default=False)] = None,
    image_b: Annotated[Path | None, typer.Argument(help="Second image (B).", show_default=False)] = None,
    pairs: Annotated[
        Path | None,
        typer.Option("--pairs", help="CSV with columns a,b: compare every row in one model load.", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="With --pairs: CSV file to write ('-' or leave out for stdout).",
            show_default=False,
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="With --pairs: keep the compared rows in -o and compare the other pairs, and again those whose "
            "row is an error. A row counts for a pair whose two cells name the same files.",
        ),
    ] = False,
    as_json: JsonOpt = False,
    spec: ModelSpec = ModelSpec(),
) -> None:
    """Which of two images has better quality, with P(A better than B)."""
    from vcritic.pipeline.distributed import lead, single_process_only, team_for

    if pairs is not None:
        team = team_for(spec.device, spec.device_map)  # several processes under accelerate launch: each a shard
        if team is not None and not team.is_main:
            team.follow(lambda: load_for_command(spec.on(team.device(spec.device))))
            return
        with lead(team):
            if team is not None:
                spec = spec.on(team.device(spec.device))  # this process's own GPU
            if image_a is not None or image_b is not None:
                raise UsageError("give either two images or --pairs, not both")
            if as_json:
                raise UsageError("--json is for one pair", hint="--pairs writes a CSV (-o)")
            _compare_many(spec, pairs, output, overwrite, resume, team)
        return
    single_process_only("compare", hint="one pair is one process's work; compare --pairs runs data-parallel")
    if image_a is None or image_b is None:
        raise UsageError("compare needs two images", hint="vcritic compare A B, or vcritic compare --pairs pairs.csv")
    if output is not None or overwrite or resume:
        raise UsageError(
            "-o, --overwrite and --resume are for --pairs runs", hint="use --json for a machine-readable result"
        )
    _compare_one(spec, image_a, image_b, as_json)


def _compare_one(spec: ModelSpec, image_a: Path, image_b: Path, as_json: bool) -> None:
    from vcritic.base.images import load_image
    from vcritic.cli._output import stdout
    from vcritic.pipeline.scoring import describe_error

    images = []
    for label, path in (("A", image_a), ("B", image_b)):
        try:
            images.append(load_image(path))
        except Exception as err:
            raise VcriticError(f"cannot read image {label} ({path}): {describe_error(err)}") from None
    critic = load_for_command(spec)
    comparison = critic.compare(images[0], images[1])
    p, better = comparison.p_a_better, comparison.better
    if as_json:
        result = {"a": str(image_a), "b": str(image_b), "p_a_better": round(p, 6), "better": better,
                  "model": critic.source}  # fmt: skip
        stdout.print(json.dumps(result), markup=False)
        return
    if better == "tie":
        stdout.print(f"No preference: P(A better than B) = {p:.4f}", markup=False)
    else:
        label, winner = ("A", image_a) if better == "a" else ("B", image_b)
        stdout.print(f"{label} is better ({winner}): P(A better than B) = {p:.4f}", markup=False)


def _compare_many(spec: ModelSpec, pairs_file: Path, output, overwrite, resume, team=None) -> None:
    from vcritic.cli._csv import open_output, path_names
    from vcritic.cli._output import make_progress, stderr
    from vcritic.engine.batches import BatchPlan
    from vcritic.pipeline.scoring import compare_paths
    from vcritic.readout.schema import COMPARE_COLUMNS, format_number, resolve_relative

    rows, fieldnames = read_pairs(pairs_file)
    extra = [name for name in COMPARE_COLUMNS if name not in fieldnames]
    resolved = [(resolve_relative(row["a"], pairs_file.parent), resolve_relative(row["b"], pairs_file.parent))
                for row in rows]  # fmt: skip
    inputs = [pairs_file, *(path for pair in resolved for path in pair)]
    failed = 0
    with open_output(output, fieldnames + extra, overwrite=overwrite, resume=resume, inputs=inputs) as out:
        bases = [pairs_file.parent.absolute()]

        def names(row):  # cells are paths relative to the pairs file: one pair, however its cells are spelled
            return list(itertools.product(path_names(row["a"], bases), path_names(row["b"], bases)))

        todo = [k for k, done in enumerate(out.match(rows, names, names)) if done is None]
        failed = sum(1 for row in out.existing_rows() if row.get("error"))
        if resume:
            stderr.print(
                f"Resuming {output}: {len(out.existing_rows())} row(s) already there, {len(todo)} pair(s) to go"
                + (f" ({out.retried} earlier error row(s) compared again)" if out.retried else ""),
                markup=False,
            )
        critic = None
        plan = BatchPlan(spec.batch_size)
        if todo:
            critic = team.load(lambda: load_for_command(spec)) if team else load_for_command(spec)
            run = team.compare_paths if team else compare_paths  # the team: every process compares a shard
            results = run(critic, [resolved[k] for k in todo], batch_size=plan, workers=spec.workers)
            with make_progress() as progress:
                task = progress.add_task("Comparing", total=len(todo), rate="")
                for k, result in zip(todo, results, strict=True):
                    ok = result.p_a_better is not None
                    failed += not ok
                    out.write({**rows[k], "p_a_better": format_number(result.p_a_better), "error": result.error or "",
                               "better": verdict(result.p_a_better) if ok else ""})  # fmt: skip
                    progress.update(task, advance=1)
    total = out.total_rows
    shapes = f", {critic.fixed_shapes.describe()}" if critic is not None and critic.fixed_shapes else ""
    processes = f", {team.size} processes" if team else ""
    done = f" ({plan.describe()}{shapes}{processes})" if critic is not None else ""
    stderr.print(f"Compared {total - failed} of {total} pairs{done}" + (f" -> {out.path}" if out.path else "")
                 + out.resume_note("compared"), markup=False)  # fmt: skip
    if critic is not None:
        stderr.print(f"Model: {critic.loaded}", markup=False)
    if failed:
        stderr.print(f"{failed} pair(s) could not be compared; see the error column.", style="yellow", markup=False)
        raise typer.Exit(EXIT_PARTIAL if failed < total else 1)

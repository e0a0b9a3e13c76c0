"""``vcritic calibrate``: fit a monotonic map from vcritic's MOS (0-100) onto a dataset's own scale."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vcritic.base.docs_url import docs_page
from vcritic.base.files import check_output_file
from vcritic.cli._options import check_scheme, check_split, model_options, parse_range, usage_callback
from vcritic.errors import UsageError, VcriticError
from vcritic.inference.model_spec import ModelSpec

EPILOG = (
    "Labels come from --dataset (a registered dataset under --root, or a CSV manifest with --mos-range) or from a "
    "--target column of the --predictions CSV. Scores come from --predictions (a 'vcritic score' or 'bench --out' "
    "CSV; --model then names the model that wrote them) or, without it, from scoring the --dataset with --model. "
    "The map is the 4-parameter logistic, or isotonic regression where that fit fails. Writes calibration.json "
    "(plain JSON); use it with: vcritic score --calibration FILE. Exit status: 0 written; 1 nothing written (a bad "
    "file or dataset, too few images, all scores equal); 2 usage error."
)


@model_options()
def calibrate(
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            "-p",
            help="CSV of vcritic scores (path, mos, ...), as 'vcritic score' or 'bench --out' writes it. Left out: "
            "score the --dataset with --model.",
            show_default=False,
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "-d",
            help="The labels: a dataset name (koniq10k, spaq, ...; its own scale, e.g. KonIQ-10k's 1-5) or a CSV "
            "manifest (path,mos; scale from --mos-range).",
            show_default=False,
        ),
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Folder with the dataset (as for bench). Default: $VCRITIC_DATA, else the "
            "datasets/ folder in vcritic's home.",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="The labels: this column of the --predictions CSV (higher = better), instead of --dataset.",
            show_default=False,
        ),
    ] = None,
    target_range: Annotated[
        str | None,
        typer.Option(
            "--target-range",
            callback=usage_callback(lambda text: parse_range(text, "--target-range")),
            help="With --target: the scale's range, e.g. 0-10 (calibrated values are kept inside it). Default: the "
            "lowest and highest label seen (then not enforced).",
            show_default=False,
        ),
    ] = None,
    target_name: Annotated[
        str | None,
        typer.Option(
            "--target-name",
            help="Name of the target scale, e.g. 'our raters'. Default: the dataset's title, or the --target column.",
            show_default=False,
        ),
    ] = None,
    mos_range: Annotated[
        str | None,
        typer.Option(
            "--mos-range",
            callback=usage_callback(parse_range),
            help="For a CSV manifest as --dataset: its MOS range, e.g. 1-5 (default 0-100).",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            callback=usage_callback(check_split),
            help="Which images of --dataset: all, train, test or val (as for bench).",
        ),
    ] = "all",
    split_scheme: Annotated[
        str,
        typer.Option(
            "--split-scheme",
            callback=usage_callback(check_scheme),
            help="paper (seeded 80/20, KADID by reference) or official (KonIQ).",
        ),
    ] = "paper",
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Use a seeded random subset of N images of --dataset.", show_default=False),
    ] = None,
    kind: Annotated[
        str,
        typer.Option("--kind", help="logistic (4-parameter, isotonic where its fit fails) or isotonic."),
    ] = "logistic",
    folds: Annotated[int, typer.Option("--folds", min=2, help="Folds for the held-out figures (k-fold).")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the k-fold assignment.")] = 0,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Calibration JSON to write; '-' for stdout."),
    ] = Path("calibration.json"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output file.")] = False,
    spec: ModelSpec = ModelSpec(),
) -> None:
    """Fit a monotonic map from vcritic's MOS (0-100) onto a dataset's own scale, and say how well it holds on
    images it was not fitted on; writes calibration.json for score --calibration."""
    from vcritic.pipeline.distributed import single_process_only

    single_process_only("calibrate")
    import json

    from vcritic.cli._output import stderr
    from vcritic.evaluation.calibration import calibrate as fit
    from vcritic.evaluation.calibration import model_identity

    kinds = {"logistic": "logistic4", "logistic4": "logistic4", "isotonic": "isotonic"}
    if kind.lower() not in kinds:
        raise UsageError(
            f"--kind {kind!r} is not logistic or isotonic",
            hint="the default, logistic, falls back to isotonic where its fit fails",
        )
    if (dataset is None) == (target is None):
        raise UsageError(
            "give the labels with one of --dataset NAME or --target COLUMN",
            hint="--dataset koniq10k --root DIR, or --predictions FILE --target COLUMN",
        )
    if target is not None and predictions is None:
        raise UsageError("--target names a column of the --predictions CSV", hint="pass --predictions FILE")
    if target is None and (target_range is not None):
        raise UsageError("--target-range is for --target", hint="a dataset's range comes from its own files")
    if predictions is not None and not predictions.is_file():
        raise VcriticError(f"predictions file {predictions} not found", hint="write it with: vcritic score -o FILE")
    to_stdout = str(output) == "-"
    if not to_stdout:
        _check_output(output, overwrite)
    if predictions is not None and spec.model is None:
        raise UsageError(
            "--predictions needs --model: the model that wrote the scores (the calibration is refused for others)",
            hint="e.g. --model qwen2.5-vl-7b, the default preset, if score ran without --model",
        )

    notes: list[str] = []
    # The dataset is read (and its images checked) before a model is loaded or a score read.
    prepared = None if dataset is None else _prepare(dataset, root, split, split_scheme, limit, mos_range, predictions)
    if predictions is not None:
        identity = model_identity(spec.model, spec.revision, spec.adapter)
        if prepared is None:
            mos, labels, scale = _from_columns(
                predictions, target, parse_range(target_range, "--target-range"), target_name, notes
            )
            source = predictions.name
        else:
            from vcritic.evaluation import bench as benchmark

            roots = [prepared.root, *([root] if root else [])]
            rows = benchmark.read_predictions(predictions, prepared.records, roots, notes=notes)
            mos, labels, scale = _labelled(prepared, rows, target_name, f"in {predictions}", notes)
            source = prepared.name
    else:
        from vcritic.cli._model import load_for_command

        critic = load_for_command(spec)
        stderr.print(f"Model: {critic.loaded}", markup=False)
        identity = model_identity(critic.source, spec.revision, spec.adapter, commit=critic.loaded.revision)
        rows = _score_records(prepared, critic, spec.batch_size, spec.workers)
        mos, labels, scale = _labelled(prepared, rows, target_name, "scored", notes)
        source = prepared.name

    for note in notes:
        stderr.print(note, style="dim", markup=False)
    calibration = fit(
        mos, labels, target=scale, model=identity, dataset=source, kind=kinds[kind.lower()], folds=folds, seed=seed
    )
    _print_report(calibration, stderr)
    if to_stdout:
        typer.echo(json.dumps(calibration.to_dict(), indent=2))
    else:
        calibration.save(output)
        stderr.print(
            f"Wrote {output}; use it with: vcritic score IMAGES --calibration {output}"
            + ("" if spec.model is None else f" --model {spec.model}"),
            markup=False,
        )


def _check_output(output: Path, overwrite: bool) -> None:
    check_output_file(output, example="-o calibration.json", overwrite=overwrite)


def _prepare(dataset, root, split, scheme, limit, mos_range, predictions_file):
    """The chosen images of a registered dataset or a manifest, as bench reads them (labels mapped to 0-100)."""
    from vcritic.base.home import data_root
    from vcritic.evaluation import bench as benchmark

    prepared = benchmark.prepare(dataset, data_root() if root is None else root, split=split, scheme=scheme,
                                 limit=limit, mos_range=parse_range(mos_range))  # fmt: skip
    if predictions_file is None and not any(r.path.is_file() for r in prepared.records[:50]):
        raise VcriticError(
            f"{prepared.title}: the images listed in the annotation file are missing (e.g. {prepared.records[0].path})",
            hint=f"where the images go: {docs_page('guides/benchmarks', 'getting-the-datasets')}",
        )
    return prepared


def _labelled(prepared, rows, name, where: str, notes):
    """(scores, labels on the dataset's own scale, that scale) for the images that have a score in ``rows``."""
    from vcritic.evaluation.calibration import TargetScale

    pairs = [(row.mos, record.mos) for row, record in zip(rows, prepared.records, strict=True)
             if row is not None and row.mos is not None]  # fmt: skip
    if not pairs:
        raise VcriticError(
            f"none of the {len(prepared.records)} {prepared.title} images ({prepared.split} split) has a score {where}",
            hint="paths are matched as bench --predictions matches them; try --split all"
            if where != "scored"
            else None,
        )
    if len(pairs) < len(prepared.records):
        notes.append(
            f"{prepared.title}: {len(pairs)} of {len(prepared.records)} images ({prepared.split} split) have a "
            "score; the others are left out"
        )
    low, high = prepared.mos_range
    # Records hold MOS mapped linearly to 0-100 from the documented range: map back to the dataset's own numbers.
    labels = [low + value / 100.0 * (high - low) for _, value in pairs]
    return [mos for mos, _ in pairs], labels, TargetScale(name or f"{prepared.title} MOS", low, high)


def _score_records(prepared, critic, batch_size, workers) -> list:
    from vcritic.cli._output import make_progress
    from vcritic.evaluation import bench as benchmark

    with make_progress() as progress:
        task = progress.add_task(f"Scoring {escape(prepared.title)}", total=len(prepared.records), rate="")
        return benchmark.predict(critic, prepared.records, tasks=("mos",), batch_size=batch_size, workers=workers,
                                 advance=lambda n: progress.update(task, advance=n))  # fmt: skip


def _from_columns(path: Path, column: str, target_range, name, notes):
    """(scores, labels, the scale) from one CSV holding vcritic's ``mos`` and a label column."""
    from vcritic.base.csvio import OneRowEach
    from vcritic.datasets.records import read_csv_table
    from vcritic.evaluation.calibration import TargetScale
    from vcritic.readout.schema import MOS_SCALE

    header, rows = read_csv_table(path, (), "a CSV with path, mos and a target column")
    for wanted in ("mos", column):
        if wanted not in header:
            raise VcriticError(
                f"{path} has no column {wanted!r} (found: {', '.join(h for h in header if h) or 'none'})",
                hint="mos is vcritic's score (as vcritic score writes it); --target names the label column",
            )
    mos, labels, skipped = [], [], 0
    once = OneRowEach(path, f"mos or {column} values")
    for number, row in enumerate(rows, 2):
        if (row.get("scale") or MOS_SCALE).strip() != MOS_SCALE:
            raise VcriticError(
                f"{path}, line {number}: scale is {row['scale']!r}, not {MOS_SCALE}",
                hint="mos must be vcritic's 0-100 score",
            )
        score, label = (row["mos"] or "").strip(), (row[column] or "").strip()
        if (row.get("error") or "").strip() or not score or not label:
            skipped += 1
            continue
        try:
            values = float(score), float(label)
        except ValueError:
            raise VcriticError(f"{path}, line {number}: mos {score!r} or {column} {label!r} is not a number") from None
        if not all(math.isfinite(v) for v in values):
            raise VcriticError(f"{path}, line {number}: mos {score!r} or {column} {label!r} is not a finite number")
        if not 0.0 <= values[0] <= 100.0:
            raise VcriticError(
                f"{path}, line {number}: mos {values[0]:g} lies outside vcritic's 0-100 scale",
                hint="mos must be vcritic's score as vcritic score writes it",
            )
        image = (row.get("path") or "").strip()
        if image and not once.first(image, image, number, values):
            continue
        mos.append(values[0])
        labels.append(values[1])
    if skipped:
        notes.append(f"{path.name}: {skipped} row(s) without a score or a {column} value are left out")
    if once.note():
        notes.append(once.note())
    if target_range is None:
        low, high = (min(labels), max(labels)) if labels else (0.0, 1.0)
        if labels and high > low:
            notes.append(
                f"target range {low:g}-{high:g}: the lowest and highest {column} seen (give --target-range "
                "for the scale's own limits)"
            )
        scale = TargetScale(name or column, low, high if high > low else low + 1.0, "observed", clip=False)
    else:
        outside = sum(1 for v in labels if not target_range[0] <= v <= target_range[1])
        if outside:
            raise VcriticError(
                f"{path}: {outside} {column} value(s) lie outside --target-range "
                f"{target_range[0]:g}-{target_range[1]:g}",
                hint="check the range",
            )
        scale = TargetScale(name or column, *target_range, "documented", clip=True)
    return mos, labels, scale


def _print_report(calibration, console) -> None:
    from rich.table import Table

    metrics, scale = calibration.metrics, calibration.target
    held = metrics["held_out"]
    how = "4-parameter logistic" if calibration.kind == "logistic4" else "isotonic regression"
    observed = ", range as observed" if scale.range == "observed" else ""
    title = f"Calibration: vcritic MOS (0-100) -> {escape(scale.label)}{observed}, {how}, n = {calibration.n}"
    table = Table(title=title, title_justify="left")
    for column in ("metric", "before", "after (fitted on all)", f"after (held out, {held['folds']}-fold)"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    before, fitted = metrics["before"], metrics["fitted"]
    table.add_row("PLCC", *(_num(part["plcc"], 3) for part in (before, fitted, held)))
    table.add_row(f"RMSE ({scale.low:g}-{scale.high:g})", *(_num(part["rmse"], 4) for part in (before, fitted, held)))
    console.print(table)
    console.print(
        f"SRCC {_num(metrics['srcc'], 3)} (a map that never decreases keeps the ranking). before: 0-100 stretched "
        f"linearly onto {scale.low:g}-{scale.high:g}; held out: each image mapped by a fit made without it.",
        style="dim",
        markup=False,
    )
    if calibration.fallback:
        console.print(f"Used isotonic regression: {calibration.fallback}.", style="yellow", markup=False)
    if len(held["kinds"]) > 1 or calibration.kind not in held["kinds"]:
        used = ", ".join(f"{k} in {v}" for k, v in held["kinds"].items())
        console.print(f"Held-out fits: {used} of {held['folds']} folds.", style="dim", markup=False)
    for warning in calibration.warnings:
        console.print(f"Warning: {warning}", style="yellow", markup=False)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"

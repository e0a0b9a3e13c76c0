"""``vcritic bench``: SRCC/PLCC and friends on a public IQA dataset (or a CSV manifest), the paper's protocol."""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vcritic.base.docs_url import docs_page
from vcritic.base.files import check_output_folder, write_json_atomically
from vcritic.cli._exit import EXIT_PARTIAL
from vcritic.cli._options import check_scheme, check_split, json_flag, model_options, parse_range, usage_callback
from vcritic.errors import UsageError, VcriticError
from vcritic.inference.model_spec import ModelSpec

EPILOG = (
    "NAME is a dataset (koniq10k, spaq, flive, livec, cgiqa6k, kadid10k, agiqa3k, aigciqa2023), 'all' for every "
    "dataset found under --root, or a CSV manifest (path,mos[,brightness,...,ai_generated,ref_id,split]). "
    "--root is the dataset's folder or the folder holding it under its name (koniq10k/, spaq/, ...). "
    "MOS is compared on a 0-100 scale, higher is better. Splits: 80/20 random per dataset, KADID-10k 65/16 "
    "references, seed 2403 (--split-scheme official: KonIQ-10k's own split). --out DIR writes predictions.csv, "
    "metrics.json, split.csv and pairs.csv (one folder per dataset for 'all'). Under 'accelerate launch -m vcritic "
    "bench ...' the processes share the scoring and the pairs; the first one writes the files and prints. Exit "
    "status: 0 done; 3 done, but some images have no score; 1 nothing evaluated; 2 usage error."
)


JsonOpt = json_flag("Print the metrics as JSON instead of a table.")


@model_options()
def bench(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="Dataset name, 'all', or a CSV manifest file.", show_default=False)
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Folder with the dataset(s), each under its name (koniq10k/, spaq/, ...). Default: $VCRITIC_DATA, "
            "else the datasets/ folder in vcritic's home.",
            show_default=False,
        ),
    ] = None,
    list_datasets: Annotated[
        bool, typer.Option("--list", help="List the datasets, and whether and where each was found.")
    ] = False,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            help="Evaluate a CSV written by 'vcritic score' (path,mos,...) instead of running a model.",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            "--split", callback=usage_callback(check_split), help="test, train, val (official scheme only) or all."
        ),
    ] = "test",
    split_scheme: Annotated[
        str,
        typer.Option(
            "--split-scheme",
            callback=usage_callback(check_scheme),
            help="paper (seeded 80/20, KADID by reference) or official (KonIQ-10k's own).",
        ),
    ] = "paper",
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Evaluate a seeded random subset of N images.", show_default=False),
    ] = None,
    pairs: Annotated[
        int,
        typer.Option("--pairs", min=0, help="Same-dataset pairs to sample for pair-ranking accuracy (0: skip)."),
    ] = 1000,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for predictions.csv, metrics.json, split.csv, pairs.csv.", show_default=False
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace earlier results in --out: predictions.csv at the first new row, the other files as they "
            "are written; until then they stay as they were.",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an earlier run: keep the scored rows of --out/predictions.csv, score the other images "
            "and again those whose row is an error (rows match by path or by dataset and image name).",
        ),
    ] = False,
    plot: Annotated[
        bool,
        typer.Option(
            "--plot",
            help="Save a scatter plot (predicted vs true MOS, fitted curve): --out/scatter.png, else NAME-scatter.png.",
        ),
    ] = False,
    as_json: JsonOpt = False,
    mos_range: Annotated[
        str | None,
        typer.Option(
            "--mos-range",
            callback=usage_callback(parse_range),
            help="For a CSV manifest: its MOS range, e.g. 1-5 (default 0-100).",
            show_default=False,
        ),
    ] = None,
    spec: ModelSpec = ModelSpec(),
) -> None:
    """Benchmark a model on public IQA datasets: SRCC, PLCC, KRCC, pair ranking, against the paper's numbers."""
    import json

    from vcritic.base.home import data_root
    from vcritic.cli._output import stderr, stdout
    from vcritic.pipeline.distributed import lead, team_for

    team = team_for(spec.device, spec.device_map)  # several processes under accelerate launch: each scores a shard
    if team is not None and not team.is_main:
        from vcritic.cli._model import load_for_command

        team.follow(lambda: load_for_command(spec.on(team.device(spec.device))))
        return
    with lead(team):  # everything but the model's work is process 0's: --predictions and --plot need no model
        if team is not None:
            spec = spec.on(team.device(spec.device))  # this process's own GPU
        if root is None:
            root, root_note = data_root(), " (the default: $VCRITIC_DATA, else the datasets/ folder in vcritic's home)"
        else:
            root_note = ""
        if list_datasets:
            _print_found(root, root_note, stdout)
            return
        if name is None:
            raise UsageError(
                "bench needs a dataset name, 'all' or a CSV manifest", hint="vcritic bench --list shows them"
            )
        if plot:
            _require_matplotlib()
        if resume and predictions is not None:
            raise UsageError("--resume is for model runs", hint="evaluating --predictions takes no time to redo")
        if predictions is not None and spec.model is not None and _from_environment(ctx, "model"):
            spec = replace(spec, model=None)  # VCRITIC_MODEL names the model for runs that need one, not a choice here
        if spec.model is not None and predictions is not None:
            raise UsageError("--model and --predictions exclude each other", hint="give one of them")
        if predictions is not None and not predictions.is_file():
            raise VcriticError(f"predictions file {predictions} not found", hint="write it with: vcritic score -o FILE")
        names = _with_root_note(lambda: _dataset_names(name, root), root_note)
        _check_out(out, overwrite, resume, all_mode=name.lower() == "all")
        settings = dict(
            split=split, scheme=split_scheme, limit=limit, pairs=pairs, batch_size=spec.batch_size, workers=spec.workers
        )
        mos_limits = parse_range(mos_range)

        multi = name.lower() == "all"
        benches = {}
        incomplete = False
        for dataset in names:  # read every dataset before spending time on the model
            try:
                step = functools.partial(
                    _prepared, dataset, root, settings, mos_limits, check_images=predictions is None
                )
                benches[dataset] = _with_root_note(step, root_note)
            except VcriticError as err:
                if not multi:
                    raise
                stderr.print(f"[yellow]Skipping {escape(dataset)}:[/] {escape(str(err))}", markup=True)
                incomplete = True
        given, without = {}, []  # --predictions: each dataset's rows, and the datasets it has none for
        if predictions is not None:
            for dataset, prepared in list(benches.items()):
                given[dataset] = _given_predictions(prepared, predictions, root, multi)
                if given[dataset] is None:
                    without.append(benches.pop(dataset).name)

        outputs = {}  # predictions.csv of each dataset, opened and locked before the model loads
        if out is not None:
            for dataset, prepared in benches.items():
                target = out / prepared.name if multi else out
                outputs[dataset] = _open_predictions(target, prepared, overwrite, resume, predictions)
        with contextlib.ExitStack() as stack:
            for output in outputs.values():
                stack.enter_context(output)
            results, source, incomplete = _evaluate_all(
                benches, settings, predictions, given, outputs, out, plot, multi, incomplete, spec, team
            )
        label = _short_label(source["model"]) if source["model"] else (predictions.name if predictions else "ours")
        if multi:
            summary = {"source": source, "split": split, "split_scheme": split_scheme, "datasets": results}
            if predictions is not None:
                summary["without_predictions"] = without  # found under --root, but not one of their images is in it
            if out is not None:
                write_json_atomically(out / "summary.json", summary)
            if as_json:
                typer.echo(json.dumps(summary, indent=2))
            else:
                _print_table2(results, label, stdout)
            if without:
                stderr.print(
                    f"Not evaluated: {', '.join(without)} (no predictions in {predictions.name})", markup=False
                )
        else:
            (result,) = results.values()
            if as_json:
                typer.echo(json.dumps(result, indent=2))
            else:
                _print_single(result, label, stdout)
        if incomplete:
            raise typer.Exit(EXIT_PARTIAL)


def _given_predictions(bench, predictions_file: Path, root, multi: bool) -> list | None:
    """The rows of a --predictions file for a dataset's records; None for a dataset of 'all' that has none there
    (it is left out, and no file is written for it)."""
    from vcritic.cli._output import stderr
    from vcritic.evaluation import bench as benchmark

    roots = [bench.root, *([root] if root else [])]
    notes: list[str] = []
    predictions = benchmark.read_predictions(predictions_file, bench.records, roots, notes=notes)
    for note in notes:  # repeated rows of one image, counted once
        stderr.print(f"{bench.title}: {note}", style="dim", markup=False)
    if any(p is not None for p in predictions):
        return predictions
    if multi:
        return None
    raise VcriticError(
        f"none of the {len(bench.records)} {bench.title} images ({bench.split} split) is in {predictions_file}",
        hint="paths are matched after resolving; relative ones against the current folder, the CSV's folder and --root",
    )


def _evaluate_all(benches, settings, predictions, given, outputs, out, plot, multi, incomplete, spec, team):
    critic = None
    if predictions is None and benches:
        from vcritic.cli._model import load_for_command
        from vcritic.cli._output import stderr

        critic = team.load(lambda: load_for_command(spec)) if team else load_for_command(spec)
        stderr.print(f"Model: {critic.loaded}", markup=False)
    source = {"model": critic.source if critic else spec.model, "adapter": str(spec.adapter) if spec.adapter else None}
    source["predictions"] = None
    if predictions is not None:
        source = {"model": None, "adapter": None, "predictions": str(predictions)}

    results: dict[str, dict[str, Any]] = {}
    for dataset, prepared in benches.items():
        target = None if out is None else (out / prepared.name if multi else out)
        result = _run_one(prepared, settings, critic, given.get(dataset), source, target, plot, outputs.get(dataset),
                          team)  # fmt: skip
        results[dataset] = result
        incomplete |= bool(result["n_failed"] or result["n_missing"])

    if not results:
        raise VcriticError(
            "no dataset could be evaluated",
            hint="check that the predictions file covers the datasets' images" if predictions else None,
        )
    return results, source, incomplete


def _with_root_note(step, note: str):
    """Run ``step``; when --root was not given, say in its error which default folder was searched."""
    try:
        return step()
    except VcriticError as err:
        if not note:
            raise
        raise VcriticError(
            err.message + note,
            hint="unpack each dataset there under its name (koniq10k/, spaq/, ...; vcritic bench --list shows what "
            "is found), set VCRITIC_DATA to the folder holding them, or pass --root DIR",
        ) from None


def _print_found(root: Path, note: str, console) -> None:
    from rich.table import Table

    from vcritic.datasets import DATASETS

    table = Table(title=f"Datasets under {escape(str(root))}{escape(note)}", title_justify="left")
    for column in ("name", "dataset", "found at", "where to get it"):
        table.add_column(column)
    for name, spec in DATASETS.items():
        folder = spec.locate(root) if root.is_dir() else None
        table.add_row(name, spec.title, escape(str(folder)) if folder else "-", spec.url)
    _wide(console).print(table)


def _require_matplotlib() -> None:
    """Before the run, not after it: --plot is drawn once every image is scored."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        hint = "pip install 'vcritic[plot]'"
        raise VcriticError("--plot needs matplotlib, which is not installed", hint=hint) from None


def _open_predictions(target: Path, bench, overwrite: bool, resume: bool, predictions_file: Path | None):
    from vcritic.cli._csv import open_output
    from vcritic.readout.schema import prediction_columns

    target.mkdir(parents=True, exist_ok=True)
    inputs = [predictions_file] if predictions_file is not None else []
    columns = prediction_columns(bench.tasks)
    return open_output(target / "predictions.csv", columns, overwrite=overwrite,
                       resume=resume, inputs=inputs, option="--out")  # fmt: skip


# -- steps -------------------------------------------------------------------------------------------------------
def _dataset_names(name: str, root: Path | None) -> list[str]:
    from vcritic.datasets import find_datasets, get_dataset

    if name.lower() == "all":
        if root is None:
            raise UsageError("'bench all' needs --root", hint="the folder holding koniq10k/, spaq/, ...")
        found = find_datasets(root)
        if not found:
            from vcritic.datasets import DATASETS

            raise VcriticError(
                f"no dataset found under {root}",
                hint=f"expected sub-folders named {', '.join(DATASETS)}; see {docs_page('guides/benchmarks')}",
            )
        return list(found)
    if name.lower().endswith(".csv"):
        return [name]
    return [get_dataset(name).name]


def _check_out(out: Path | None, overwrite: bool, resume: bool, all_mode: bool) -> None:
    if out is None:
        if resume:
            raise UsageError("--resume needs --out", hint="it continues the predictions.csv an earlier run left there")
        return
    check_output_folder(out, hint="give a folder for --out")
    marker = out / ("summary.json" if all_mode else "metrics.json")
    if marker.exists() and not (overwrite or resume):
        raise VcriticError(
            f"{marker} already exists",
            hint="pass --overwrite to replace it, --resume to continue it, or choose another --out",
        )


def _prepared(dataset, root, settings, mos_limits, check_images: bool = False):
    from vcritic.evaluation.bench import prepare

    bench = prepare(
        dataset,
        root,
        split=settings["split"],
        scheme=settings["scheme"],
        limit=settings["limit"],
        mos_range=mos_limits,
    )
    if check_images and not any(r.path.is_file() for r in bench.records[:50]):
        example = bench.records[0].path
        raise VcriticError(
            f"{bench.title}: the images listed in the annotation file are missing (e.g. {example})",
            hint=f"where the images go: {docs_page('guides/benchmarks', 'getting-the-datasets')}",
        )
    return bench


def _run_one(bench, settings, critic, given, source, out, plot, output=None, team=None) -> dict:
    """One dataset: ``given`` predictions (--predictions) or the model's, then pairs, metrics and files."""
    from vcritic.cli._output import make_progress, stderr
    from vcritic.datasets.splits import write_split
    from vcritic.evaluation import bench as benchmark

    started = time.perf_counter()
    predictions = given if given is not None else _predict(bench, critic, settings, output, team)
    usable = [p is not None and p.mos is not None for p in predictions]
    pairs = benchmark.sample_pairs(bench.records, usable, settings["pairs"])
    pair_probs = None
    if critic is not None and pairs:
        with make_progress() as progress:
            task = progress.add_task("Comparing pairs", total=len(pairs), rate="")
            pair_probs = benchmark.compare(
                critic,
                bench.records,
                pairs,
                batch_size=settings["batch_size"],
                workers=settings["workers"],
                advance=lambda n: progress.update(task, advance=n),
                team=team,
            )
    result = benchmark.evaluate(bench, predictions, pairs=pairs, pair_probs=pair_probs, source=source)
    scored, total = result["n_scored"], result["n_images"]
    elapsed = time.perf_counter() - started
    note = output.resume_note() if output is not None and given is None else ""
    if critic is not None and critic.fixed_shapes:
        note += f" ({critic.fixed_shapes.describe()})"
    processes = f" by {team.size} processes" if team and critic is not None else ""
    stderr.print(f"{bench.title}: {scored} of {total} images evaluated in {elapsed:.1f} s{processes}{note}",
                 markup=False)  # fmt: skip
    if scored < total:
        stderr.print(f"{bench.title}: {total - scored} image(s) have no score; metrics cover the other {scored}.",
                     style="yellow", markup=False)  # fmt: skip
    if scored == 0:
        raise VcriticError(f"{bench.title}: no image could be scored", hint="see the error column of predictions.csv")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if given is not None:  # model runs wrote their rows as they went
            for record, prediction in zip(bench.records, predictions, strict=True):
                output.write(benchmark.prediction_row(bench, record, prediction))
        benchmark.write_metrics(out / "metrics.json", result)
        write_split(bench.assignment, out / "split.csv", bench.every_record)
        if pairs:
            benchmark.write_pairs(out / "pairs.csv", bench, pairs, predictions, pair_probs)
        stderr.print(f"Wrote predictions.csv, metrics.json, split.csv{', pairs.csv' if pairs else ''} to {out}",
                     markup=False)  # fmt: skip
    if plot:
        target = (out / "scatter.png") if out is not None else Path(f"{bench.name}-scatter.png")
        benchmark.plot_scatter(target, bench, predictions, result)
        stderr.print(f"Plot: {target}", markup=False)
    return result


def _predict(bench, critic, settings, output, team=None) -> list:
    """Model predictions for every record, each written to ``output`` (predictions.csv) as it is known; records
    already there (``--resume``) are read back instead of scored again."""
    from vcritic.cli._csv import path_names
    from vcritic.cli._output import make_progress, stderr
    from vcritic.evaluation import bench as benchmark

    known: dict[int, object] = {}  # record number -> its prediction
    if output is not None:
        # A row names its image by path (as written, or the same file) and by dataset and image name, so a run
        # resumed from another folder or with another spelling of --root finds it.
        def record_names(record):
            return [*path_names(str(record.path), [Path.cwd()]), ("image", record.dataset, record.image)]

        def row_names(row):
            return [*path_names(row["path"], [Path.cwd()]), ("image", row["dataset"], row["image"])]

        done = output.match(bench.records, record_names, row_names)
        known = {k: benchmark.prediction_from_row(row, output.path) for k, row in enumerate(done) if row is not None}
        if output.rows_before:
            to_go = len(bench.records) - len(known)
            stderr.print(
                f"{bench.title}: resuming, {len(known)} prediction(s) already in {output.path}, {to_go} image(s) to go",
                markup=False,
            )
    todo = [k for k in range(len(bench.records)) if k not in known]

    def keep(record, prediction) -> None:
        if output is not None:
            output.write(benchmark.prediction_row(bench, record, prediction))

    with make_progress() as progress:
        task = progress.add_task(f"Scoring {escape(bench.title)}", total=len(todo), rate="")
        fresh = benchmark.predict(critic, [bench.records[k] for k in todo], tasks=bench.tasks,
                                  batch_size=settings["batch_size"], workers=settings["workers"],
                                  advance=lambda n: progress.update(task, advance=n), on_prediction=keep,
                                  team=team)  # fmt: skip
    known.update(zip(todo, fresh, strict=True))
    return [known[k] for k in range(len(bench.records))]


def _short_label(model: str) -> str:
    """A local checkpoint by its folder name, a hub repo or preset as given."""
    path = Path(model).expanduser()
    return path.name if path.is_dir() else model


# -- tables ------------------------------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _print_single(result: dict[str, Any], label: str, console) -> None:
    from rich.table import Table

    paper = result.get("paper") or {}
    scheme = result["split_scheme"] + (f", seed {result['split_seed']}" if result.get("split_seed") else "")
    table = Table(
        title=f"{escape(result['title'])}: {result['split']} split ({scheme}), {result['n_scored']} of "
        f"{result['n_images']} images; MOS 0-100",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column(escape(label), justify="right")
    table.add_column("VisualCritic (paper)", justify="right")
    mos = result["mos"]
    table.add_row("SRCC", _num(mos["srcc"]), _num(paper.get("srcc")))
    table.add_row("PLCC", _num(mos["plcc"]), _num(paper.get("plcc")))
    table.add_row("PLCC (4-param. logistic)", _num(mos["plcc_logistic"]), "-")
    table.add_row("KRCC", _num(mos["krcc"]), "-")
    ranking = result["pair_ranking"]
    n_pairs = ranking["n_pairs"]
    table.add_row(
        f"pair ranking, direct ({n_pairs} pairs)", _num(ranking["direct"]), _num(paper.get("pair_ranking_direct"))
    )
    table.add_row(
        f"pair ranking, A-B scores ({n_pairs} pairs)",
        _num(ranking["score_difference"]),
        _num(paper.get("pair_ranking_scores")),
    )
    for attribute, values in (result.get("attributes") or {}).items():
        theirs = (paper.get("attributes") or {}).get(attribute, {})
        ours = f"{_num(values.get('srcc'))}/{_num(values.get('plcc'))}" if values.get("available") else "n/a"
        table.add_row(
            f"{attribute} SRCC/PLCC", ours, f"{_num(theirs.get('srcc'))}/{_num(theirs.get('plcc'))}" if theirs else "-"
        )
    authenticity = result.get("authenticity")
    # Shown where there is something to show: our accuracy, or the paper's (SPAQ; AIGCIQA-2023 is its other half).
    shown = authenticity is not None and (authenticity.get("available") or result["dataset"] in ("spaq", "aigciqa2023"))
    if shown:
        ours = _pct(authenticity.get("accuracy")) if authenticity.get("available") else "n/a"
        table.add_row("authenticity accuracy", ours, _pct(paper.get("authenticity_accuracy")))
    console.print(table)
    notes = []
    if ranking.get("direct_note"):
        notes.append(f"direct pair ranking {ranking['direct_note']}")
    if any(not v.get("available") for v in (result.get("attributes") or {}).values()):
        notes.append("attributes n/a: the predictions have no attribute scores (vcritic score --tasks attributes)")
    if shown and not authenticity.get("available"):
        notes.append("authenticity n/a: the predictions have no p_ai_generated (vcritic score --tasks authenticity)")
    for note in notes:
        console.print(note, style="dim", markup=False)


def _print_table2(results: dict[str, dict[str, Any]], label: str, console) -> None:
    from rich.table import Table

    from vcritic.datasets import DATASETS
    from vcritic.evaluation.bench import PAPER_PAIR_RANKING, PAPER_TABLE2

    columns = [n for n in DATASETS if n in PAPER_TABLE2 or n in results]
    table = Table(title="MOS, SRCC/PLCC (the paper's Table 2 layout)", title_justify="left")
    table.add_column("model")
    for column in columns:
        table.add_column(DATASETS[column].title, justify="right")
    table.add_row("VisualCritic (paper)", *(_pair(PAPER_TABLE2.get(c)) for c in columns))
    table.add_row(
        escape(label),
        *(
            f"{_num(results[c]['mos']['srcc'])}/{_num(results[c]['mos']['plcc'])}" if c in results else "-"
            for c in columns
        ),
    )
    console = _wide(console)
    console.print(table)

    ranking = Table(title="Pair-ranking accuracy (the paper's Table 10 layout)", title_justify="left")
    ranking.add_column("method")
    for column in columns:
        ranking.add_column(DATASETS[column].title, justify="right")
    ranking.add_row("Ranking (paper)", *(_num(PAPER_PAIR_RANKING.get(c, (None,))[0], 2) for c in columns))
    ranking.add_row("A-B scores (paper)", *(_num(PAPER_PAIR_RANKING.get(c, (None, None))[1], 2) for c in columns))
    ranking.add_row(f"Ranking ({escape(label)})", *(_rank(results, c, "direct") for c in columns))
    ranking.add_row(f"A-B scores ({escape(label)})", *(_rank(results, c, "score_difference") for c in columns))
    console.print(ranking)
    split = next(iter(results.values()))
    console.print(
        f"[dim]{split['split']} split ({split['split_scheme']}"
        f"{', seed ' + str(split['split_seed']) if split.get('split_seed') else ''}); "
        f"'-': dataset not found under --root, or not in the paper's table.[/]"
    )


def _wide(console):
    """Piped or redirected output gets room for all nine columns instead of wrapping at 80 characters."""
    if console.is_terminal:
        return console
    from rich.console import Console

    return Console(file=console.file, width=200, highlight=False, soft_wrap=True)


def _pair(values: tuple[float, float] | None) -> str:
    return "-" if values is None else f"{values[0]:.3f}/{values[1]:.3f}"


def _rank(results: dict[str, dict[str, Any]], column: str, key: str) -> str:
    if column not in results:
        return "-"
    return _num(results[column]["pair_ranking"][key], 2)


def _from_environment(ctx: typer.Context | None, name: str) -> bool:
    """Whether option ``name`` took its value from its environment variable, not the command line."""
    source = ctx.get_parameter_source(name) if ctx is not None else None
    return getattr(source, "name", None) == "ENVIRONMENT"

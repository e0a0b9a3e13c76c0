"""``vcritic rank``: order a set of images best first from the model's pairwise comparisons (Bradley-Terry)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from vcritic.base.docs_url import docs_page
from vcritic.cli._exit import EXIT_PARTIAL
from vcritic.cli._options import OverwriteOpt, model_options
from vcritic.errors import UsageError, VcriticError
from vcritic.inference.model_spec import ModelSpec
from vcritic.readout.ranking import DEFAULT_PER_IMAGE, PRIOR_SD
from vcritic.readout.schema import PAIR_COLUMNS, PAIR_DIGITS, RANK_COLUMNS

EPILOG = (
    f"Pairs: every pair for up to 2K+1 images (at most twice the comparisons of the random design), else a random "
    f"design, fixed by --seed, where each image meets at least K others (--per-image, default {DEFAULT_PER_IMAGE}) "
    f"and all images are linked; a pair costs two prompts (both orders, as in compare). Output columns: rank (1 = "
    f"best), path, strength (Bradley-Terry, logit scale, mean 0: P(i better than j) = sigmoid(strength_i - "
    f"strength_j)), se (its standard error), comparisons, win_rate (mean P(better) over its comparisons), error "
    f"(why an image was left out; those rows come last, without a rank). The fit has a N(0, {PRIOR_SD:g}^2) prior "
    f"on each strength so it stays finite when an image wins everything. Exit status: 0 every image ranked; 3 "
    f"ranked, but some images have an error; 1 nothing ranked; 2 usage error."
)


@model_options(without=("readout",))  # a pair is asked with vcritic's own question, whatever the judge's read-out
def rank(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="Image files, folders (searched recursively) or glob patterns.", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Ranking CSV to write; '-' or leave out for stdout.", show_default=False),
    ] = None,
    per_image: Annotated[
        int | None,
        typer.Option(
            "--per-image",
            "-k",
            min=2,
            help=f"Other images each image is compared with (default {DEFAULT_PER_IMAGE}); more costs model time "
            f"linearly and ranks better (how to pick it: {docs_page('guides/compare-and-rank', 'how-to-pick-k')}).",
            show_default=False,
        ),
    ] = None,
    all_pairs: Annotated[bool, typer.Option("--all-pairs", help="Compare every pair, whatever the number.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random pair design.")] = 0,
    pairs_out: Annotated[
        Path | None,
        typer.Option(
            "--pairs-out",
            help="Also write every comparison to this CSV as it is made (compare --pairs' layout: a, b, p_a_better, "
            "better, error), to refit with --from-pairs or continue with --resume.",
            show_default=False,
        ),
    ] = None,
    from_pairs: Annotated[
        Path | None,
        typer.Option(
            "--from-pairs",
            help="Fit a ranking from an existing CSV of comparisons (from --pairs-out or compare --pairs: columns a, "
            "b and p_a_better) without loading a model.",
            show_default=False,
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue a run whose --pairs-out was cut short: keep its comparisons, make the design's others "
            "(same images, --per-image and --seed), then fit all of them; -o is written anew.",
        ),
    ] = False,
    show: Annotated[
        int, typer.Option("--show", min=0, help="Images from the top and from the bottom to list on stderr.")
    ] = 5,
    spec: ModelSpec = ModelSpec(),
) -> None:
    """Rank images best first: compare pairs of them with the model and fit Bradley-Terry strengths, as CSV."""
    if from_pairs is not None:
        if inputs:
            raise UsageError("give either images or --from-pairs, not both")
        for flag, given in (("--pairs-out", pairs_out), ("--per-image", per_image), ("--all-pairs", all_pairs),
                            ("--resume", resume)):  # fmt: skip
            if given:
                raise UsageError(f"{flag} is for ranking images, not for --from-pairs")
        _rank_from_pairs(from_pairs, output, overwrite, show)
        return
    if not inputs:
        raise UsageError("rank needs images", hint="vcritic rank FOLDER, or vcritic rank --from-pairs pairs.csv")
    if per_image is not None and all_pairs:
        raise UsageError("--per-image and --all-pairs exclude each other")
    if resume and pairs_out is None:
        raise UsageError("--resume continues a --pairs-out file", hint="give the same --pairs-out as the cut run")
    from vcritic.pipeline.distributed import single_process_only

    single_process_only("rank")
    design = dict(per_image=per_image, every_pair=True if all_pairs else None, seed=seed)
    _rank_images(inputs, output, pairs_out, overwrite, resume, show, design, spec)


def _rank_images(inputs, output, pairs_out, overwrite, resume, show, design, spec: ModelSpec):
    from vcritic.base.images import require_images, unsearched_note
    from vcritic.cli._csv import open_output, path_names
    from vcritic.cli._model import load_for_command
    from vcritic.cli._output import make_progress, stderr
    from vcritic.engine.batches import BatchPlan
    from vcritic.pipeline.scoring import compare_paths
    from vcritic.readout.ranking import design_pairs
    from vcritic.readout.schema import format_number, verdict

    skipped: list[Path] = []
    unsearched: list[tuple[Path, str]] = []
    paths = [str(path) for path in require_images(inputs, skipped, unsearched)]
    if len(paths) < 2:
        raise UsageError(f"ranking needs at least 2 images, found 1 ({paths[0]})", hint="give more images")
    if pairs_out is not None and output is not None and _same_path(pairs_out, output):
        raise UsageError("-o and --pairs-out name the same file", hint="give them different names")
    with contextlib.ExitStack() as stack:
        # Both outputs are opened (and locked) before any work, so a bad path fails at once.
        # The ranking is refitted from all comparisons, so --resume replaces it like --overwrite.
        out = stack.enter_context(open_output(output, RANK_COLUMNS, overwrite=overwrite or resume, inputs=paths))
        pairs_file = None
        if pairs_out is not None:
            pairs_file = stack.enter_context(
                open_output(
                    pairs_out, PAIR_COLUMNS, overwrite=overwrite, resume=resume, inputs=paths, option="--pairs-out"
                )
            )
        errors = _unreadable(paths, spec.workers)
        good = [path for path in paths if path not in errors]
        if len(good) < 2:
            _write_errors(out, errors)
            raise VcriticError(
                f"only {len(good)} of {len(paths)} images can be read; nothing to rank", hint="see the error column"
            )
        pairs = design_pairs(len(good), **design)
        # Cells relative to the pairs file's folder, the way compare --pairs and --from-pairs read them back.
        folder = Path(os.path.abspath(pairs_out)).parent if pairs_file is not None and pairs_file.path else None
        cells = [_cell(path, folder) for path in good]
        probabilities: list[float | None] = [None] * len(pairs)
        failures: dict[int, str] = {}
        if pairs_file is not None:
            bases = [folder or Path.cwd()]

            def names(row):
                return [(a, b) for a in path_names(row["a"], bases) for b in path_names(row["b"], bases)]

            found = pairs_file.match([{"a": cells[i], "b": cells[j]} for i, j in pairs], names, names)
            for k, row in enumerate(found):
                if row is not None:
                    probabilities[k] = _probability(row["p_a_better"], pairs_out, k + 1)
            if resume:
                kept = sum(p is not None for p in probabilities)
                stderr.print(f"Resuming {pairs_out}: {kept} of {len(pairs)} comparisons already there"
                             + pairs_file.resume_note("compared"), markup=False)  # fmt: skip
        todo = [k for k, p in enumerate(probabilities) if p is None]
        critic, plan, started = None, BatchPlan(spec.batch_size), time.perf_counter()
        if todo:
            critic = load_for_command(spec)
            started = time.perf_counter()
            results = compare_paths(critic, [(good[pairs[k][0]], good[pairs[k][1]]) for k in todo],
                                    batch_size=plan, workers=spec.workers)  # fmt: skip
            with make_progress() as progress:
                task = progress.add_task("Comparing", total=len(todo), rate="")
                for done, (k, result) in enumerate(zip(todo, results, strict=True), start=1):
                    p = result.p_a_better
                    probabilities[k] = p
                    if p is None:
                        failures[k] = result.error or "could not be compared"
                    if pairs_file is not None:
                        i, j = pairs[k]
                        better = verdict(p) if p is not None else ""
                        pairs_file.write({"a": cells[i], "b": cells[j], "p_a_better": format_number(p, PAIR_DIGITS),
                                          "better": better, "error": failures.get(k, "")})  # fmt: skip
                    rate = done / max(time.perf_counter() - started, 1e-9)
                    progress.update(task, advance=1, rate=f"{rate:.1f} pairs/s")
        elapsed = time.perf_counter() - started
        compared = [(pairs[k], p) for k, p in enumerate(probabilities) if p is not None]
        # An image none of whose comparisons worked (e.g. too large for the GPU) has nothing to be ranked by.
        seen = {i for pair, _ in compared for i in pair}
        for k, reason in failures.items():
            for i in pairs[k]:
                if i not in seen:
                    errors.setdefault(good[i], f"no comparison could be made: {reason}")
        fit, labels = _fit(good, compared)
        _write_ranking(out, fit, labels, errors)
    summary = f"Ranked {len(labels)} of {len(paths)} images from {len(compared)} comparisons"
    if todo:
        shapes = f", {critic.fixed_shapes.describe()}" if critic.fixed_shapes else ""
        summary += f" in {elapsed:.1f} s ({len(todo) / max(elapsed, 1e-9):.1f} pairs/s, {plan.describe()}{shapes})"
    _finish(out, fit, labels, errors, show, summary)
    if pairs_file is not None and pairs_file.path is not None:
        stderr.print(f"Comparisons: {pairs_file.path}", markup=False)
    if critic is not None:
        stderr.print(f"Model: {critic.loaded}", markup=False)
    if unsearched:
        stderr.print(unsearched_note(unsearched), markup=False)
    if skipped:
        stderr.print(f"Not ranked: {len(skipped)} file(s) in the folders are not of an image type Pillow opens "
                     f"(e.g. {skipped[0]})", markup=False)  # fmt: skip
    if errors:
        raise typer.Exit(EXIT_PARTIAL)


def _rank_from_pairs(source: Path, output, overwrite, show) -> None:
    from vcritic.cli._csv import open_output
    from vcritic.cli._pairs import read_pairs
    from vcritic.readout.schema import resolve_relative

    rows, fieldnames = read_pairs(source)
    if "p_a_better" not in fieldnames:
        raise VcriticError(
            f"{source} has no column p_a_better (columns: {', '.join(fieldnames)})",
            hint="make it with vcritic compare --pairs FILE -o OUT, or vcritic rank ... --pairs-out OUT",
        )
    index: dict[str, int] = {}
    labels: list[str] = []
    compared: list[tuple[tuple[int, int], float]] = []
    failed: dict[str, str] = {}
    for number, row in enumerate(rows, start=1):
        ends = []
        for column in ("a", "b"):
            # One image however its cell is spelled (./a.png, a.png), named as from here like `score` does.
            label = os.path.normpath(resolve_relative(row[column].strip(), source.parent))
            if label not in index:
                index[label] = len(labels)
                labels.append(label)
            ends.append(index[label])
        if row.get("error") or not row["p_a_better"].strip():
            for i in ends:
                failed.setdefault(labels[i], f"not compared: {row.get('error') or 'no p_a_better'}")
            continue
        if ends[0] != ends[1]:  # an image against itself says nothing about its strength
            compared.append(((ends[0], ends[1]), _probability(row["p_a_better"], source, number)))
    ranked = {labels[i] for pair, _ in compared for i in pair}
    errors = {label: failed.get(label, "compared only with itself") for label in labels if label not in ranked}
    good = [label for label in labels if label in ranked]
    if len(good) < 2:
        raise VcriticError(
            f"{source} has no usable comparison of two different images",
            hint="rows with an error or an empty p_a_better are skipped",
        )
    position = {label: n for n, label in enumerate(good)}
    compared = [((position[labels[i]], position[labels[j]]), p) for (i, j), p in compared]
    with open_output(output, RANK_COLUMNS, overwrite=overwrite, inputs=[source]) as out:
        fit, names = _fit(good, compared)
        _write_ranking(out, fit, names, errors)
    _finish(out, fit, names, errors, show, f"Ranked {len(names)} images from {len(compared)} comparisons in {source}")
    if errors:
        raise typer.Exit(EXIT_PARTIAL)


def _probability(text: str, source, number: int) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise VcriticError(f"{source}: comparison {number} has p_a_better {text!r}, not a probability in 0-1")
    return value


def _fit(good: Sequence[str], compared):
    """Bradley-Terry over the images that took part in ``compared``; ``labels`` are theirs, in the fit's order."""
    from vcritic.readout.ranking import fit_bradley_terry

    ranked = sorted({i for pair, _ in compared for i in pair})
    position = {i: n for n, i in enumerate(ranked)}
    labels = [good[i] for i in ranked]
    pairs = [(position[i], position[j]) for (i, j), _ in compared]
    fit = fit_bradley_terry(len(labels), pairs, [p for _, p in compared], labels=labels)
    return fit, labels


def _write_ranking(out, fit, labels: Sequence[str], errors: dict[str, str]) -> None:
    from vcritic.readout.schema import format_number

    win_rate = fit.win_rate
    for place, i in enumerate(fit.order(), start=1):
        out.write({"rank": str(place), "path": labels[i], "strength": format_number(fit.strength[i]),
                   "se": format_number(fit.se[i]), "comparisons": str(fit.comparisons[i]),
                   "win_rate": format_number(win_rate[i]), "error": ""})  # fmt: skip
    _write_errors(out, errors)


def _write_errors(out, errors: dict[str, str]) -> None:
    for path, reason in errors.items():
        out.write({"rank": "", "path": path, "strength": "", "se": "", "comparisons": "0", "win_rate": "",
                   "error": reason})  # fmt: skip


def _finish(out, fit, labels, errors, show: int, summary: str) -> None:
    from vcritic.cli._output import stderr

    if show:
        stderr.print(_table(fit, labels, show))
    stderr.print(summary + (f" -> {out.path}" if out.path else ""), markup=False)
    if errors:
        stderr.print(f"{len(errors)} image(s) could not be ranked; see the error column.", style="yellow",
                     markup=False)  # fmt: skip


def _table(fit, labels: Sequence[str], show: int):
    from rich.markup import escape
    from rich.table import Table

    order = list(fit.order())
    table = Table(title="Ranking (best first)", title_justify="left")
    for name, justify in (("rank", "right"), ("path", "left"), ("strength", "right"), ("se", "right"),
                          ("comparisons", "right"), ("win rate", "right")):  # fmt: skip
        table.add_column(name, justify=justify)
    places = (
        list(range(len(order)))
        if len(order) <= 2 * show
        else [*range(show), None, *range(len(order) - show, len(order))]
    )
    win_rate = fit.win_rate
    for place in places:
        if place is None:
            table.add_row("...", "", "", "", "", "")
            continue
        i = order[place]
        table.add_row(str(place + 1), escape(labels[i]), f"{fit.strength[i]:+.3f}", f"{fit.se[i]:.3f}",
                      str(fit.comparisons[i]), f"{win_rate[i]:.3f}")  # fmt: skip
    return table


def _unreadable(paths: Sequence[str], workers: int | None) -> dict[str, str]:
    """Images that cannot be opened, and why: checked once up front, so each is left out of the design instead of
    failing every pair it would be in."""
    from concurrent.futures import ThreadPoolExecutor

    from vcritic.base.images import UnreadableImageError, load_image
    from vcritic.cli._output import stderr
    from vcritic.pipeline.scoring import default_workers

    def problem(path: str) -> str | None:
        try:
            load_image(path)
        except UnreadableImageError as err:
            return err.message
        return None

    threads = max(1, default_workers() if workers is None else workers)  # Pillow decodes without the GIL
    with stderr.status(f"Checking {len(paths)} images..."), ThreadPoolExecutor(threads) as pool:
        found = list(pool.map(problem, paths))
    return {path: reason for path, reason in zip(paths, found, strict=True) if reason is not None}


def _cell(path: str, folder: Path | None) -> str:
    """How a pairs file in ``folder`` names ``path`` (None: stdout, named as given)."""
    if folder is None or os.path.isabs(path):
        return path
    return os.path.relpath(os.path.abspath(path), folder)


def _same_path(first: Path, second: Path) -> bool:
    return str(first) != "-" and os.path.realpath(first) == os.path.realpath(second)

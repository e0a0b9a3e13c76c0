"""The benchmark pipeline: dataset records -> predictions -> metrics, following the paper's protocol.

Predictions come from a model (:func:`predict`, streamed in batches through
:func:`vcritic.pipeline.scoring.score_paths`) or
from a CSV written earlier by ``vcritic score`` (:func:`read_predictions`), so metrics never need a model re-run.
:func:`evaluate` turns them into one JSON-ready dict: SRCC, PLCC (raw and after the 4-parameter logistic fit), KRCC;
the SPAQ attributes and authenticity accuracy where both labels and a readout exist; pair-ranking accuracy on
sampled same-dataset pairs, by direct comparison and from two predicted scores (the paper's Table 10).
"""

from __future__ import annotations

import math
import os
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vcritic.base.csvio import DictWriter
from vcritic.base.files import open_atomically, write_json_atomically
from vcritic.datasets import ATTRIBUTES, Record, get_dataset, load_dataset, load_manifest, locate_dataset
from vcritic.datasets import splits as splitting
from vcritic.datasets.records import read_csv_table
from vcritic.errors import UsageError, VcriticError
from vcritic.readout.results import ScoreRow
from vcritic.readout.schema import (
    BENCH_FIELDS,  # noqa: F401  (re-exported: predictions.csv's own columns)
    BENCH_PAIR_COLUMNS,
    MOS_SCALE,
    format_number,
    prediction_columns,
)

if TYPE_CHECKING:
    from vcritic.pipeline.distributed import Team

PAIR_SEED = splitting.SPLIT_SEED

# The paper's numbers for VisualCritic (one model for all datasets).
# Table 2, SRCC/PLCC, in the table's column order.
PAPER_TABLE2: dict[str, tuple[float, float]] = {
    "koniq10k": (0.856, 0.867),
    "spaq": (0.844, 0.852),
    "flive": (0.553, 0.633),
    "livec": (0.738, 0.778),
    "cgiqa6k": (0.442, 0.473),
    "kadid10k": (0.681, 0.701),
    "agiqa3k": (0.734, 0.712),
}
# Table 10, pair-ranking accuracy: (ranking the pair directly, comparing two predicted scores).
PAPER_PAIR_RANKING: dict[str, tuple[float, float]] = {
    "koniq10k": (0.85, 0.81),
    "spaq": (0.86, 0.84),
    "flive": (0.76, 0.72),
    "livec": (0.80, 0.76),
    "cgiqa6k": (0.74, 0.70),
    "kadid10k": (0.79, 0.77),
    "agiqa3k": (0.82, 0.80),
}
# Table 4, on SPAQ: attribute SRCC/PLCC; authenticity accuracy on SPAQ (photos) + AIGCIQA-2023 (AI-generated).
PAPER_ATTRIBUTES: dict[str, tuple[float, float]] = {
    "brightness": (0.730, 0.783),
    "colorfulness": (0.707, 0.719),
    "contrast": (0.709, 0.717),
    "noisiness": (0.813, 0.807),
    "sharpness": (0.828, 0.811),
}
PAPER_AUTHENTICITY = 0.703

NO_ATTRIBUTE_READOUT = (
    "not available: the predictions have no score for this attribute (write them with vcritic score --tasks "
    "attributes, or run bench with --model)"
)
NO_AUTHENTICITY_READOUT = (
    "not available: the predictions have no p_ai_generated column (write them with vcritic score --tasks "
    "authenticity, or run bench with --model)"
)


@dataclass
class Benchmark:
    """One dataset split, ready to be predicted and evaluated."""

    name: str
    title: str
    root: Path  # the dataset folder (manifest: the manifest's folder)
    records: list[Record]  # the evaluated images, in dataset order
    assignment: dict[str, str]  # image name -> split, for every image of the dataset
    split: str
    scheme: str
    mos_source: str
    mos_range: tuple[float, float]
    every_record: list[Record] = field(default_factory=list, repr=False)  # all splits, for split.csv's ref_id

    @cached_property
    def tasks(self) -> tuple[str, ...]:
        """What the model reads out for it (see :func:`benchmark_tasks`); computed once, since every row of
        predictions.csv asks for it and it scans all records."""
        return benchmark_tasks(self.records)


def prepare(
    name: str,
    root: str | os.PathLike | None,
    *,
    split: str = "test",
    scheme: str = "paper",
    limit: int | None = None,
    mos_range: tuple[float, float] | None = None,
    seed: int = splitting.SPLIT_SEED,
) -> Benchmark:
    """Load a registered dataset (``name`` under ``root``) or a CSV manifest (``name`` is its path) and pick a split.

    ``limit`` keeps a seeded random subset of the split, so quick runs still cover the whole dataset.
    """
    if name.lower().endswith(".csv"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise VcriticError(f"manifest {path} not found", hint="give a CSV with path and mos columns")
        mos_range = mos_range or (0.0, 100.0)
        records = load_manifest(path, mos_range)
        title, folder, source = path.stem, path.parent, f"{path.name}: mos ({mos_range[0]:g}-{mos_range[1]:g})"
        by_reference = all(r.ref_id for r in records)
        key = path.stem
    else:
        spec = get_dataset(name)
        if mos_range is not None:
            raise UsageError("--mos-range is for CSV manifests", hint=f"{spec.title}'s range is fixed by its files")
        if root is None:
            raise VcriticError(f"no --root given for {spec.title}", hint="pass --root with the folder holding it")
        folder = locate_dataset(spec, root)
        records = load_dataset(spec, folder)
        title, source, by_reference, key, mos_range = (
            spec.title,
            spec.mos_source,
            spec.split_by_reference,
            spec.name,
            spec.mos_range,
        )
    assignment = splitting.assign(records, key, scheme=scheme, by_reference=by_reference, seed=seed)
    chosen = splitting.subsample(splitting.select(records, assignment, split), limit, seed)
    return Benchmark(key, title, folder, chosen, assignment, split, scheme, source, mos_range, records)


# -- predictions -------------------------------------------------------------------------------------------------
def benchmark_tasks(records: Sequence[Record]) -> tuple[str, ...]:
    """What to read out for a dataset: MOS, plus the attributes and authenticity where it has labels for them."""
    tasks = ["mos"]
    if any(r.attributes for r in records):
        tasks.append("attributes")
    if any(r.ai_generated is not None for r in records):
        tasks.append("authenticity")
    return tuple(tasks)


def predict(
    critic,
    records: Sequence[Record],
    *,
    tasks: Sequence[str] | None = None,
    batch_size: int = 8,
    workers: int | None = None,
    advance: Callable[[int], None] | None = None,
    on_prediction: Callable[[Record, ScoreRow], None] | None = None,
    team: Team | None = None,
) -> list[ScoreRow]:
    """The model's read-outs for every record (default: :func:`benchmark_tasks`), in record order, streamed in
    batches; all questions about an image share one encoding of it. ``on_prediction`` sees each prediction as soon
    as it is known (to write it to disk). With a ``team`` (process 0 under ``accelerate launch``) every process
    scores a share of the records."""
    from vcritic.pipeline.scoring import score_paths

    tasks = benchmark_tasks(records) if tasks is None else tasks
    paths = [str(r.path) for r in records]
    run = team.score_paths if team is not None else score_paths
    predictions = []
    for record, row in zip(records, run(critic, paths, tasks=tasks, batch_size=batch_size, workers=workers),
                           strict=True):  # fmt: skip
        predictions.append(row)
        if on_prediction:
            on_prediction(record, row)
        if advance:
            advance(1)
    return predictions


def _real(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def read_predictions(
    path: Path, records: Sequence[Record], roots: Sequence[Path] = (), notes: list[str] | None = None
) -> list[ScoreRow | None]:
    """The row of a ``vcritic score`` CSV (path, mos, mos_std, scale, error) for each record; None where absent.

    Rows match records by resolved path; a relative path is tried against the current folder, the CSV's folder and
    each of ``roots``. Failing that, a row matches a record whose image name (as the annotation file gives it)
    the row's path ends with, where exactly one path does. Several rows for one record are one row when their
    values are the same (counted in a note added to ``notes``) and a UsageError when they differ.
    """
    from vcritic.base.csvio import OneRowEach, cell_name

    header, rows = read_csv_table(path, ("path", "mos"), "a predictions CSV from `vcritic score` (path, mos, ...)")
    scale_ok = all((row.get("scale") or MOS_SCALE).strip() == MOS_SCALE for row in rows)
    if not scale_ok:
        raise VcriticError(f"{path} has rows whose scale is not {MOS_SCALE}", hint="bench expects MOS on 0-100")
    attributes = [a for a in ATTRIBUTES if a in header]
    bases = list(dict.fromkeys([Path.cwd(), path.parent, *roots]))
    by_path: dict[str, list[int]] = defaultdict(list)  # a file -> the rows naming it (numbers into rows)
    by_tail: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for number, row in enumerate(rows):
        text = (row["path"] or "").strip()
        if not text:
            continue
        for spelling in dict.fromkeys([text, cell_name(text) or text]):  # and a \\xNN-escaped name's file
            given = Path(spelling).expanduser()
            for candidate in [given] if given.is_absolute() else [base / given for base in bases]:
                found = by_path[_real(candidate)]
                if not found or found[-1] != number:
                    found.append(number)
        parts = tuple(text.replace("\\", "/").split("/"))
        for k in range(1, min(len(parts), 4) + 1):
            by_tail[parts[-k:]].append(number)

    once = OneRowEach(path, "scores", show=_shown)
    matched: list[ScoreRow | None] = []
    for index, record in enumerate(records):
        candidates = by_path.get(_real(record.path))
        if not candidates:
            tail = by_tail.get(tuple(record.image.replace("\\", "/").split("/")), [])
            # one path only: a name under several folders is ambiguous; the same path repeated is one image
            candidates = tail if len({rows[n]["path"].strip() for n in tail}) == 1 else []
        prediction = None
        for number in candidates:
            row = _prediction(rows[number], attributes, path)
            values = (row.mos, row.mos_std, sorted(row.attributes.items()), row.p_ai_generated, row.error)
            if once.first(index, rows[number]["path"].strip(), number + 2, values):
                prediction = row
        matched.append(prediction)
    if notes is not None and once.note():
        notes.append(once.note())
    return matched


def _shown(values: tuple) -> str:
    """A prediction's values as :func:`read_predictions` compares them, for an error message."""
    mos, std, attributes, p_ai, error = values
    if error is not None:
        return f"error {error!r}"
    named = [("mos", mos), ("mos_std", std), *attributes, ("p_ai_generated", p_ai)]
    return " ".join(f"{name} {value:g}" for name, value in named if value is not None)


def _prediction(row: dict[str, str], attributes: Sequence[str], path: Path) -> ScoreRow:
    error = (row.get("error") or "").strip() or None
    text = (row.get("mos") or "").strip()
    if error or not text:
        return ScoreRow(row["path"], None, None, error or "no score in the predictions file")
    try:
        mos = float(text)
        std = float(row["mos_std"]) if (row.get("mos_std") or "").strip() else None
        scores = {a: float(row[a]) for a in attributes if (row.get(a) or "").strip()}
        p_ai = float(row["p_ai_generated"]) if (row.get("p_ai_generated") or "").strip() else None
    except ValueError as err:
        raise VcriticError(f"{path}: row for {row['path']!r} has a non-number: {err}") from None
    if not (math.isfinite(mos) and 0.0 <= mos <= 100.0):
        raise VcriticError(
            f"{path}: row for {row['path']!r} has mos {text}, outside vcritic's 0-100 scale",
            hint="bench reads the scores vcritic score writes",
        )
    return ScoreRow(row["path"], mos, std, None, scores, p_ai_generated=p_ai)


# -- pairs -------------------------------------------------------------------------------------------------------
def sample_pairs(
    records: Sequence[Record], usable: Sequence[bool], n: int, seed: int = PAIR_SEED
) -> list[tuple[int, int]]:
    """Up to ``n`` distinct pairs (indices into ``records``) of usable images from the same dataset with different
    MOS, drawn at random (seeded); either image may come first."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        if usable[i]:
            groups[record.dataset].append(i)
    candidates = [i for group in groups.values() if len(group) >= 2 for i in group]
    if n <= 0 or not candidates:
        return []
    rng = random.Random(seed)
    pairs: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(50 * n):
        if len(pairs) >= n:
            break
        first = rng.choice(candidates)
        second = rng.choice(groups[records[first].dataset])
        key = (min(first, second), max(first, second))
        if first == second or records[first].mos == records[second].mos or key in seen:
            continue
        seen.add(key)
        pairs.append((first, second))
    return pairs


def compare(
    critic,
    records: Sequence[Record],
    pairs: Sequence[tuple[int, int]],
    *,
    batch_size: int = 8,
    workers: int | None = None,
    advance: Callable[[int], None] | None = None,
    team: Team | None = None,
) -> list[float | None]:
    """P(first better than second) from the model's direct comparison, per pair (None where it failed); with a
    ``team``, every process compares a share of the pairs."""
    from vcritic.pipeline.scoring import compare_paths

    probabilities = []
    named = [(str(records[i].path), str(records[j].path)) for i, j in pairs]
    run = team.compare_paths if team is not None else compare_paths
    for row in run(critic, named, batch_size=batch_size, workers=workers):
        probabilities.append(row.p_a_better)
        if advance:
            advance(1)
    return probabilities


# -- metrics -----------------------------------------------------------------------------------------------------
def evaluate(
    bench: Benchmark,
    predictions: Sequence[ScoreRow | None],
    *,
    pairs: Sequence[tuple[int, int]] = (),
    pair_probs: Sequence[float | None] | None = None,
    source: dict[str, Any] | None = None,
    pair_seed: int = PAIR_SEED,
) -> dict[str, Any]:
    """Every metric for one benchmark run, as a JSON-ready dict (undefined numbers are None)."""
    from vcritic.evaluation import metrics

    records = bench.records
    ok = [i for i, p in enumerate(predictions) if p is not None and p.mos is not None]
    missing = sum(p is None for p in predictions)
    predicted = [predictions[i].mos for i in ok]  # type: ignore[union-attr]
    truth = [records[i].mos for i in ok]
    mos = metrics.correlations(predicted, truth)
    params = metrics.fit_logistic(predicted, truth)
    mos["logistic"] = list(params) if params else None

    result: dict[str, Any] = {
        "dataset": bench.name,
        "title": bench.title,
        "split": bench.split,
        "split_scheme": bench.scheme,
        "split_seed": splitting.SPLIT_SEED if bench.scheme == "paper" else None,
        "scale": MOS_SCALE,
        "mos_source": bench.mos_source,
        "source": source or {},
        "n_images": len(records),
        "n_scored": len(ok),
        "n_failed": len(records) - len(ok) - missing,
        "n_missing": missing,
        "mos": mos,
        "attributes": _attributes(records, predictions, ok),
        "authenticity": _authenticity(records, predictions, ok),
        "pair_ranking": _pair_ranking(records, predictions, pairs, pair_probs, pair_seed),
        "paper": _paper(bench.name),
    }
    return _json_ready(result)


def _attributes(records, predictions, ok) -> dict[str, Any] | None:
    """Attribute SRCC/PLCC where the dataset has attribute ground truth (SPAQ); None where it has none."""
    from vcritic.evaluation import metrics

    present = [a for a in ATTRIBUTES if any(a in records[i].attributes for i in ok)]
    if not present:
        return None
    out: dict[str, Any] = {}
    for attribute in present:
        both = [i for i in ok if attribute in records[i].attributes and attribute in predictions[i].attributes]
        if not both:
            out[attribute] = {"available": False, "note": NO_ATTRIBUTE_READOUT}
            continue
        pred = [predictions[i].attributes[attribute] for i in both]
        true = [records[i].attributes[attribute] for i in both]
        out[attribute] = {"available": True, "n": len(both), "srcc": metrics.srcc(pred, true)}
        out[attribute]["plcc"] = metrics.plcc(pred, true)
    return out


def _authenticity(records, predictions, ok) -> dict[str, Any] | None:
    """Accuracy of photo-vs-AI where the images have labels and the predictions a readout; None without labels."""
    from vcritic.evaluation import metrics

    labelled = [i for i in ok if records[i].ai_generated is not None]
    if not labelled:
        return None
    both = [i for i in labelled if predictions[i].p_ai_generated is not None]
    if not both:
        return {"available": False, "note": NO_AUTHENTICITY_READOUT}
    guessed = [predictions[i].p_ai_generated > 0.5 for i in both]
    return {
        "available": True,
        "n": len(both),
        "accuracy": metrics.accuracy(guessed, [records[i].ai_generated for i in both]),
    }


def _pair_ranking(records, predictions, pairs, pair_probs, seed) -> dict[str, Any]:
    from vcritic.evaluation import metrics

    truth = [records[i].mos > records[j].mos for i, j in pairs]
    scored = [k for k, (i, j) in enumerate(pairs) if _has_mos(predictions[i]) and _has_mos(predictions[j])]
    by_scores = metrics.score_pair_accuracy(
        [predictions[pairs[k][0]].mos for k in scored],
        [predictions[pairs[k][1]].mos for k in scored],
        [truth[k] for k in scored],
    )
    out: dict[str, Any] = {"n_pairs": len(pairs), "seed": seed, "score_difference": by_scores, "direct": None}
    if pair_probs is None:
        out["direct_note"] = "not run: direct comparison needs a model (--model)"
    else:
        done = [k for k, p in enumerate(pair_probs) if p is not None]
        out["direct"] = metrics.pair_accuracy([pair_probs[k] for k in done], [truth[k] for k in done])
        out["n_direct"] = len(done)
    return out


def _has_mos(prediction: ScoreRow | None) -> bool:
    return prediction is not None and prediction.mos is not None


def _paper(name: str) -> dict[str, Any] | None:
    if name not in PAPER_TABLE2 and name != "spaq":
        return None
    paper: dict[str, Any] = {}
    if name in PAPER_TABLE2:
        paper["srcc"], paper["plcc"] = PAPER_TABLE2[name]
        paper["pair_ranking_direct"], paper["pair_ranking_scores"] = PAPER_PAIR_RANKING[name]
    if name == "spaq":
        paper["attributes"] = {a: {"srcc": s, "plcc": p} for a, (s, p) in PAPER_ATTRIBUTES.items()}
        paper["authenticity_accuracy"] = PAPER_AUTHENTICITY
    return paper


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


# -- outputs -----------------------------------------------------------------------------------------------------
def write_predictions(path: Path, bench: Benchmark, predictions: Sequence[ScoreRow | None]) -> Path:
    """Per-image CSV (see :func:`prediction_row`), written whole; the read-out columns are those the predictions
    have."""
    tasks = ["mos"]
    if any(p is not None and p.attributes for p in predictions):
        tasks.append("attributes")
    if any(p is not None and p.p_ai_generated is not None for p in predictions):
        tasks.append("authenticity")
    with open_atomically(path, newline="") as handle:
        writer = DictWriter(handle, prediction_columns(tasks))
        writer.writeheader()
        for record, prediction in zip(bench.records, predictions, strict=True):
            writer.writerow(prediction_row(bench, record, prediction, tasks))
    return path


def prediction_row(
    bench: Benchmark, record: Record, prediction: ScoreRow | None, tasks: Sequence[str] | None = None
) -> dict[str, str]:
    """One row of predictions.csv: the read-outs as ``vcritic score`` writes them (:meth:`ScoreRow.fields`), with
    the record's path, so the file can be fed back with ``--predictions``; then dataset, image name, split and
    truth."""
    path = str(record.path)
    p = ScoreRow(path, None, None, "no prediction for this image") if prediction is None else prediction
    return {
        **replace(p, path=path).fields(bench.tasks if tasks is None else tasks),
        "dataset": record.dataset,
        "image": record.image,
        "split": bench.assignment.get(record.image, ""),
        "mos_true": format_number(record.mos),
    }


def prediction_from_row(row: dict[str, str], path: Path) -> ScoreRow:
    """A row of a predictions CSV back as a :class:`~vcritic.readout.results.ScoreRow` (what ``--resume`` reads)."""
    return _prediction(row, [a for a in ATTRIBUTES if a in row], path)


def write_pairs(
    path: Path,
    bench: Benchmark,
    pairs: Sequence[tuple[int, int]],
    predictions: Sequence[ScoreRow | None],
    pair_probs: Sequence[float | None] | None,
) -> Path:
    """One row per sampled pair: both images, their true and predicted MOS, and P(a better) where compared."""
    with open_atomically(path, newline="") as handle:
        writer = DictWriter(handle, BENCH_PAIR_COLUMNS)
        writer.writeheader()
        for k, (i, j) in enumerate(pairs):
            a, b = bench.records[i], bench.records[j]
            writer.writerow(
                {
                    "a": a.image,
                    "b": b.image,
                    "mos_true_a": format_number(a.mos),
                    "mos_true_b": format_number(b.mos),
                    "mos_a": format_number(predictions[i].mos if predictions[i] else None),
                    "mos_b": format_number(predictions[j].mos if predictions[j] else None),
                    "p_a_better": format_number(pair_probs[k] if pair_probs else None),
                }
            )
    return path


def write_metrics(path: Path, result: dict[str, Any]) -> Path:
    write_json_atomically(path, result)
    return path


def plot_scatter(path: Path, bench: Benchmark, predictions: Sequence[ScoreRow | None], result: dict[str, Any]):
    """PNG: predicted MOS against ground truth, with the fitted logistic curve."""
    try:
        import matplotlib
    except ImportError:
        raise VcriticError("--plot needs matplotlib", hint="pip install 'vcritic[plot]'") from None
    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt

    from vcritic.evaluation.metrics import logistic4

    ok = [i for i, p in enumerate(predictions) if _has_mos(p)]
    x = np.array([predictions[i].mos for i in ok], dtype=float)
    y = np.array([bench.records[i].mos for i in ok], dtype=float)
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
    ax.scatter(x, y, s=8, alpha=0.5, edgecolors="none", label=f"images (n={len(ok)})")
    params = result["mos"].get("logistic")
    if params and len(x):
        grid = np.linspace(x.min(), x.max(), 200)
        ax.plot(grid, logistic4(grid, *params), color="C3", label="4-parameter logistic fit")
    mos = result["mos"]
    ax.set_title(
        f"{bench.title} ({bench.split}): SRCC {format_number(mos['srcc'], 3)}, PLCC {format_number(mos['plcc'], 3)}"
    )
    ax.set_xlabel("predicted MOS (0-100)")
    ax.set_ylabel("ground-truth MOS (0-100)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    try:
        with open_atomically(path, "wb") as handle:
            fig.savefig(handle, format="png")
    finally:
        plt.close(fig)
    return path

"""Batched scoring of files: decode and tokenise in DataLoader workers while the model runs.

:func:`score_paths` and :func:`compare_paths` yield one row per input, in input order, as soon as its batch is done,
so callers can stream results to disk. A file that cannot be read becomes a row with an ``error`` and the run goes
on. A score moves with the batch size and the other images in a batch only by rounding: up to 1e-5 on CPU in
float32, a few MOS points on a GPU in bfloat16 (README, Performance); not at all with ``critic.fixed_shapes``
(``--reproducible``, :mod:`vcritic.shapes`), which ``Critic.read``/``last_logits`` apply to each batch here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vcritic.datasets.records import ATTRIBUTES
from vcritic.images import load_image
from vcritic.tasks import DEFAULT_TASKS, task_questions

if TYPE_CHECKING:
    from vcritic.critic import Critic, Encoder
    from vcritic.memory import BatchPlan
    from vcritic.prompts import Question

MOS_SCALE = "0-100"  # what every mos and attribute column means: 0 lowest, 100 highest


def score_columns(tasks: Sequence[str] = DEFAULT_TASKS) -> list[str]:
    """The columns of a scores CSV for ``tasks``; `vcritic bench --predictions` reads any of these layouts."""
    columns = ["path"]
    if "mos" in tasks:
        columns += ["mos", "mos_std"]
    if "attributes" in tasks:
        columns += [name for attribute in ATTRIBUTES for name in (attribute, f"{attribute}_std")]
    if "authenticity" in tasks:
        columns += ["p_ai_generated"]
    return [*columns, "scale", "error"]


# The default (MOS only) layout.
SCORE_FIELDS = score_columns()


def format_number(value: float | None, digits: int = 4) -> str:
    """A CSV cell: empty for a missing or non-finite value."""
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def score_fields(
    path: str,
    mos: float | None,
    mos_std: float | None,
    error: str | None,
    *,
    tasks: Sequence[str] = DEFAULT_TASKS,
    attributes: dict[str, float] | None = None,
    attributes_std: dict[str, float] | None = None,
    p_ai_generated: float | None = None,
) -> dict[str, str]:
    """One row of a scores CSV, as ``vcritic score --tasks ...`` writes it (the columns of :func:`score_columns`)."""
    attributes, attributes_std = attributes or {}, attributes_std or {}
    row = {"path": path, "mos": format_number(mos), "mos_std": format_number(mos_std)}
    for attribute in ATTRIBUTES:
        row[attribute] = format_number(attributes.get(attribute))
        row[f"{attribute}_std"] = format_number(attributes_std.get(attribute))
    row.update(p_ai_generated=format_number(p_ai_generated, 6), scale=MOS_SCALE, error=error or "")
    return {column: row[column] for column in score_columns(tasks)}


@dataclass
class ScoreRow:
    path: str
    mos: float | None  # 0-100, higher is better
    mos_std: float | None  # spread of the model's rating distribution, same scale
    error: str | None = None
    attributes: dict[str, float] = field(default_factory=dict)  # 0-100, higher = more of the attribute
    attributes_std: dict[str, float] = field(default_factory=dict)
    p_ai_generated: float | None = None  # 0-1

    def fields(self, tasks: Sequence[str] = DEFAULT_TASKS) -> dict[str, str]:
        """This row as a scores-CSV row."""
        return score_fields(
            self.path,
            self.mos,
            self.mos_std,
            self.error,
            tasks=tasks,
            attributes=self.attributes,
            attributes_std=self.attributes_std,
            p_ai_generated=self.p_ai_generated,
        )


@dataclass
class CompareRow:
    a: str
    b: str
    p_a_better: float | None  # P(a has better quality than b), averaged over both presentation orders
    error: str | None = None


def describe_error(err: BaseException) -> str:
    """A short, path-free reason why an image could not be used."""
    from vcritic.images import describe_image_error

    return describe_image_error(err)


class _ImageDataset:
    """Item i: the encoded prompt(s) for input i, or the reason it failed. Runs in worker processes."""

    def __init__(self, encoder: Encoder, items: Sequence[Any], encode: Callable[[Encoder, Any], list[dict]]):
        self.encoder = encoder
        self.items = items
        self.encode = encode

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        try:
            return index, self.encode(self.encoder, self.items[index]), None
        except Exception as err:  # any decode/preprocess failure is reported on the row, not raised
            return index, None, describe_error(err)


class _Collate:
    """Pads the encodings of the items that worked; keeps the failures aside. Picklable for worker processes."""

    def __init__(self, encoder: Encoder, questions: bool = False):
        self.encoder = encoder
        self.questions = questions  # items are Encoder.encode_questions results

    def __call__(self, samples):
        ok = [(index, encodings) for index, encodings, error in samples if error is None]
        errors = {index: error for index, _, error in samples if error is not None}
        flat = [encoding for _, encodings in ok for encoding in encodings]
        collate = self.encoder.collate_questions if self.questions else self.encoder.collate
        batch = collate(flat) if flat else None
        return [index for index, _ in ok], errors, batch


class _EncodeQuestions:
    """Worker-side encoding of one file for a set of questions (image encoded once). Picklable."""

    def __init__(self, questions: Sequence[Question]):
        self.questions = tuple(questions)

    def __call__(self, encoder: Encoder, path) -> list[dict]:
        return [encoder.encode_questions(self.questions, load_image(path))]


def default_workers() -> int:
    """Decode/preprocess processes: one core stays with the model, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _loader(critic: Critic, items: Sequence[Any], start: int, encode, batch_size: int, workers: int | None, questions):
    import torch

    dataset = _ImageDataset(critic.encoder, items, encode)
    if start:
        dataset = torch.utils.data.Subset(dataset, range(start, len(items)))  # items keep their own index
    workers = default_workers() if workers is None else workers
    if len(items) - start <= batch_size:
        workers = 0  # one batch: starting processes costs more than it saves
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_Collate(critic.encoder, questions),
        pin_memory=critic.device.type == "cuda",
        prefetch_factor=2 if workers else None,
    )


def _batches(critic: Critic, items: Sequence[Any], encode, batch_size, workers: int | None, run, questions=False):
    """``(indices, errors, run(batch))`` per batch, in input order, with the batch size of
    :class:`~vcritic.memory.BatchPlan` (``auto`` measured first); a batch that runs out of GPU memory is run again at
    half the size (see :mod:`vcritic.memory`), so no row is lost and none is scored twice."""
    from vcritic.memory import TOO_LARGE, BatchPlan, auto_batch_size, is_out_of_memory, release_cached_memory

    plan = BatchPlan.of(batch_size)
    if plan.current is None:
        plan.current = auto_batch_size(critic.device, lambda: _run_one(critic, items, encode, run, questions))
    start = 0
    while start < len(items):
        halved = False
        for indices, errors, batch in _loader(critic, items, start, encode, plan.current, workers, questions):
            outputs = None
            if batch is not None:
                try:
                    outputs = run(batch)
                except Exception as err:
                    if not is_out_of_memory(err):
                        raise
                    halved = plan.halve()
                    if halved:
                        break
                    errors = {**errors, **dict.fromkeys(indices, TOO_LARGE)}  # one image alone does not fit
                    indices = []
                finally:
                    batch = None
            start += len(indices) + len(errors)
            yield indices, errors, outputs
        if halved:
            release_cached_memory(critic.device)
        elif start < len(items):  # the loader ended early: nothing is left that it could give
            break


def _run_one(critic: Critic, items: Sequence[Any], encode, run, questions) -> None:
    """One image through ``run``, for the ``auto`` measurement (the first of the first few that can be read)."""
    for index, item in enumerate(items[:8]):
        try:
            encodings = encode(critic.encoder, item)
        except Exception:
            continue
        run(_Collate(critic.encoder, questions)([(index, encodings, None)])[2])
        return


def _encode_pair(encoder: Encoder, pair) -> list[dict]:
    return encoder.encode_both_orders(load_image(pair[0]), load_image(pair[1]))


def score_paths(
    critic: Critic,
    paths: Sequence[str | os.PathLike],
    *,
    tasks: Sequence[str] = DEFAULT_TASKS,
    batch_size: int | str | BatchPlan = 8,
    workers: int | None = None,
    questions: Sequence[Question] | None = None,
) -> Iterator[ScoreRow]:
    """The ``tasks`` read-outs (default MOS, 0-100) for each file, in input order, streamed batch by batch.

    All questions about an image share one encoding of it (see :mod:`vcritic.shared_prefix`). ``questions``
    replaces the tasks' questions by any subset of them (benchmarks ask one at a time). ``batch_size``: a number,
    ``"auto"`` or a :class:`~vcritic.memory.BatchPlan` (which then reports the size it ended at).
    """
    from vcritic.results import scores_from_readouts

    questions = tuple(questions) if questions is not None else task_questions(tasks)
    names = [os.fspath(p) for p in paths]
    encode = _EncodeQuestions(questions)

    def run(batch):
        return scores_from_readouts(questions, critic.read(questions, batch))

    for indices, errors, scores in _batches(critic, names, encode, batch_size, workers, run, questions=True):
        results = dict(zip(indices, scores, strict=True)) if scores is not None else {}
        for index in sorted([*results, *errors]):
            if index in errors:
                yield ScoreRow(names[index], None, None, errors[index])
            else:
                s = results[index]
                yield ScoreRow(names[index], s.mos, s.mos_std, None, s.attributes, s.attributes_std, s.p_ai_generated)


def compare_paths(
    critic: Critic,
    pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
    *,
    batch_size: int | str | BatchPlan = 8,
    workers: int | None = None,
) -> Iterator[CompareRow]:
    """P(a better than b) for each pair, in input order. ``batch_size`` counts pairs (two prompts each)."""
    from vcritic.critic import symmetric_preference

    names = [(os.fspath(a), os.fspath(b)) for a, b in pairs]

    def run(batch):
        return symmetric_preference(critic.readout(critic.pair_question, batch).probs).tolist()

    for indices, errors, probs in _batches(critic, names, _encode_pair, batch_size, workers, run):
        results = dict(zip(indices, probs, strict=True)) if probs is not None else {}
        for index in sorted([*results, *errors]):
            a, b = names[index]
            yield CompareRow(a, b, results.get(index), errors.get(index))


def resolve_relative(path: str, base: Path) -> str:
    """A path from a CSV file, taken relative to the CSV's own folder unless absolute."""
    candidate = Path(path).expanduser()
    return os.fspath(candidate if candidate.is_absolute() else base / candidate)

"""Batched scoring of files: decode and tokenise in DataLoader workers while the model runs.

:func:`score_paths` and :func:`compare_paths` yield one row per input, in input order, as soon as its batch is done,
so callers can stream results to disk. A file that cannot be read becomes a row with an ``error`` and the run goes
on. A score moves with the batch size and the other images in a batch only by rounding: up to 1e-5 on CPU in
float32, a few MOS points on a GPU in bfloat16 (docs/explanations/score-tolerance.md); not at all with
``critic.fixed_shapes`` (``--reproducible``, :mod:`vcritic.inference.shapes`), which
``Critic.read_shared``/``last_logits``
apply
to each batch here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from vcritic.base.images import load_image
from vcritic.readout.results import CompareRow, ScoreRow
from vcritic.readout.schema import (  # all but DEFAULT_TASKS re-exported: callers imported them from here before schema
    DEFAULT_TASKS,
    MOS_SCALE,  # noqa: F401
    format_number,  # noqa: F401
    resolve_relative,  # noqa: F401
    score_columns,  # noqa: F401
    score_fields,  # noqa: F401
)

if TYPE_CHECKING:
    from vcritic.engine.batches import BatchPlan
    from vcritic.inference.critic import Critic
    from vcritic.inference.encoder import Encoder
    from vcritic.readout.prompts import Question

NO_RATING = "the model's answer held no rating"


def describe_error(err: BaseException) -> str:
    """A short, path-free reason why an image could not be used."""
    from vcritic.base.images import describe_image_error

    return describe_image_error(err)


class _ImageDataset:
    """Item i: the encoded prompt(s) for input i, or the reason it failed. Runs in worker processes.

    ``dtype``: the model's; Qwen2-VL-style processors then cast the pixels to it before patchifying (see
    :func:`pixels_cast_early`), which halves the bytes of their largest copy."""

    def __init__(self, encoder: Encoder, items: Sequence[Any], encode: Callable[[Encoder, Any], list[dict]],
                 dtype=None):  # fmt: skip
        self.encoder = encoder
        self.items = items
        self.encode = encode
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        try:
            with pixels_cast_early(self.encoder.processor, self.dtype):
                return index, self.encode(self.encoder, self.items[index]), None
        except Exception as err:  # any decode/preprocess failure is reported on the row, not raised
            return index, None, describe_error(err)


def _stock_patchify(image_processor) -> Callable | None:
    """transformers' own Qwen2-VL ``patchify`` when ``image_processor`` uses it unchanged, else None."""
    try:  # compat: Qwen2VLImageProcessor.patchify (transformers 5.x), a pure reshape/permute/expand of the pixels
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    except ImportError:
        return None
    stock = getattr(Qwen2VLImageProcessor, "patchify", None)
    if stock is None or getattr(type(image_processor), "patchify", None) is not stock:
        return None
    return stock


@contextlib.contextmanager
def pixels_cast_early(processor, dtype):
    """While inside, a Qwen2-VL-style image processor casts its normalised pixels to ``dtype`` before patchifying.

    Its ``patchify`` only moves values (a permute, and a copy of each patch for the temporal axis), so casting
    before it gives the same bits as casting after, on half the bytes: the patchified float32 tensor (19 MB for a
    1024x768 image) is the largest thing a worker writes. Other processors, and ``dtype`` None, are left alone."""
    image_processor = getattr(processor, "image_processor", None)
    stock = _stock_patchify(image_processor) if dtype is not None else None
    if stock is None:
        yield
        return

    def patchify(images, *args, **kwargs):
        return stock(image_processor, images.to(dtype), *args, **kwargs)

    # An instance attribute, removed on the way out. Two threads that overlap here can only make one of them cast
    # after patchifying instead (the collate casts what is left): the bits are the same either way.
    image_processor.patchify = patchify
    try:
        yield
    finally:
        image_processor.__dict__.pop("patchify", None)


def _cast_nested(value, dtype):
    """``value`` (an encoding: tensors in dicts and lists) with its floating-point tensors in ``dtype``."""
    if isinstance(value, dict):
        return {key: _cast_nested(item, dtype) for key, item in value.items()}
    if isinstance(value, list):
        return [_cast_nested(item, dtype) for item in value]
    from vcritic.inference.runner import cast_floating

    return cast_floating(value, dtype)


class _Collate:
    """Pads the encodings of the items that worked; keeps the failures aside. Picklable for worker processes.

    ``dtype``: the model's, to cast the pixels to here (:func:`vcritic.inference.critic.cast_floating`), in the worker:
    each
    item before padding, so the batch is concatenated at the smaller size (elementwise, so the same bits)."""

    def __init__(self, encoder: Encoder, questions: bool = False, dtype=None):
        self.encoder = encoder
        self.questions = questions  # items are Encoder.encode_questions results
        self.dtype = dtype

    def __call__(self, samples):
        from vcritic.inference.runner import cast_floating

        ok = [(index, encodings) for index, encodings, error in samples if error is None]
        errors = {index: error for index, _, error in samples if error is not None}
        flat = [encoding for _, encodings in ok for encoding in encodings]
        if self.dtype is not None:
            flat = _cast_nested(flat, self.dtype)
        collate = self.encoder.collate_questions if self.questions else self.encoder.collate
        batch = collate(flat) if flat else None
        if batch is not None and self.dtype is not None:
            batch = cast_floating(batch, self.dtype)  # a no-op for what collate only concatenated
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


def _loader(critic: Critic, items, start: int, encode, batch_size: int, workers: int | None, questions, dtype):
    import torch

    dataset = _ImageDataset(critic.encoder, items, encode, dtype)
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
        collate_fn=_Collate(critic.encoder, questions, dtype),
        pin_memory=critic.device.type == "cuda",
        prefetch_factor=2 if workers else None,
    )


def _batches(critic: Critic, items: Sequence[Any], encode, batch_size, workers: int | None, launch, finish,
             *, questions=False, overlap=True):  # fmt: skip
    """``(indices, errors, finish(launch(batch)))`` per batch, in input order:
    :func:`vcritic.engine.batches.run_batches`
    (``auto``, halving on out-of-memory, one batch in flight) over batches that DataLoader workers decode, encode
    and collate. An image too large even alone gets the error row :data:`~vcritic.engine.batches.TOO_LARGE`.

    ``launch(batch)`` copies a collated batch to the device and queues the forward, returning device tensors without
    waiting for them; ``finish(result)`` turns them into Python values. With ``overlap`` the workers also cast the
    pixels to the model's dtype; ``overlap=False`` finishes each batch before fetching the next and casts on the
    device (for benchmarks)."""
    from vcritic.engine.batches import TOO_LARGE, run_batches

    dtype = critic.dtype if overlap else None

    def fetch(start: int, size: int):
        return _loader(critic, items, start, encode, size, workers, questions, dtype)

    return run_batches(
        len(items),
        batch_size,
        critic.device,
        fetch,
        launch,
        finish,
        run_one=lambda: _run_one(critic, items, encode, launch, finish, questions),
        too_large=lambda indices: dict.fromkeys(indices, TOO_LARGE),
        overlap=overlap,
    )


def _run_one(critic: Critic, items: Sequence[Any], encode, launch, finish, questions) -> None:
    """One image through ``launch`` and ``finish``, for the ``auto`` measurement (the first of the first few that
    can be read)."""
    for index, item in enumerate(items[:8]):
        try:
            encodings = encode(critic.encoder, item)
        except Exception:
            continue
        finish(launch(_Collate(critic.encoder, questions)([(index, encodings, None)])[2]))
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
    overlap: bool = True,
) -> Iterator[ScoreRow]:
    """The ``tasks`` read-outs (default MOS, 0-100) for each file, in input order, streamed batch by batch.

    All questions about an image share one encoding of it (see :mod:`vcritic.inference.shared_prefix`). ``questions``
    replaces the tasks' questions by any subset of them (benchmarks ask one at a time). ``batch_size``: a number,
    ``"auto"`` or a :class:`~vcritic.engine.batches.BatchPlan` (which then reports the size it ended at). ``overlap``:
    one
    batch in flight while the next is launched (see ``_batches``); False runs them one after another, for
    benchmarks (the rows are the same).
    """
    from vcritic.readout.results import scores_from_readouts

    questions = tuple(questions) if questions is not None else critic.task_questions(tasks)
    names = [os.fspath(p) for p in paths]
    encode = _EncodeQuestions(questions)
    untrained = critic.untrained(tasks)
    generated_mos = any(q.generates and q.name == "quality" for q in questions)

    def launch(batch):
        return critic.read_shared(questions, batch)

    def finish(readouts):
        return scores_from_readouts(questions, readouts, untrained=untrained)

    batches = _batches(critic, names, encode, batch_size, workers, launch, finish, questions=True, overlap=overlap)
    for indices, errors, scores in batches:
        results = dict(zip(indices, scores, strict=True)) if scores is not None else {}
        for index in sorted([*results, *errors]):
            if index in errors:
                yield ScoreRow(names[index], None, None, errors[index], untrained=untrained)
            else:
                s = results[index]
                # A reasoning judge that wrote no number: say so on the row rather than leave a silent gap.
                error = NO_RATING if generated_mos and s.mos is None else None
                yield ScoreRow(names[index], s.mos, s.mos_std, error, s.attributes, s.attributes_std,
                               s.p_ai_generated, untrained)  # fmt: skip


def compare_paths(
    critic: Critic,
    pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
    *,
    batch_size: int | str | BatchPlan = 8,
    workers: int | None = None,
    overlap: bool = True,
) -> Iterator[CompareRow]:
    """P(a better than b) for each pair, in input order. ``batch_size`` counts pairs (two prompts each);
    ``overlap`` as in :func:`score_paths`."""
    from vcritic.inference.critic import symmetric_preference

    names = [(os.fspath(a), os.fspath(b)) for a, b in pairs]

    def launch(batch):
        return symmetric_preference(critic.read_single(critic.pair_question, batch).probs)

    def finish(probs):
        return probs.tolist()

    for indices, errors, probs in _batches(
        critic, names, _encode_pair, batch_size, workers, launch, finish, overlap=overlap
    ):
        results = dict(zip(indices, probs, strict=True)) if probs is not None else {}
        for index in sorted([*results, *errors]):
            a, b = names[index]
            yield CompareRow(a, b, results.get(index), errors.get(index))

"""The Python API: :class:`Critic` scores, compares, ranks, describes and talks about images.

A Critic is a :class:`~vcritic.inference.runner.Runner` (the loaded model, its encoder and the forwards) with the
questions asked on top: which tasks, how a judge's MOS is read (:attr:`Critic.judge`), and the results as
:class:`~vcritic.readout.results.Score`, :class:`~vcritic.readout.results.Comparison` and the rest. The file pipeline
(:mod:`vcritic.pipeline.scoring`) and the service use its :meth:`Critic.read_shared` and :meth:`Critic.read_single` on
batches
that DataLoader workers encoded and collated with its :attr:`~vcritic.inference.runner.Runner.encoder`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vcritic.engine.batches import in_batches
from vcritic.errors import VcriticError
from vcritic.inference.batching import PADDED
from vcritic.inference.encoder import Family
from vcritic.inference.runner import Runner
from vcritic.inference.shapes import FixedShapes
from vcritic.inference.shared_prefix import answer_logits, cache_generator, collate_questions, generate_and_answer
from vcritic.model.resolution import Resolution
from vcritic.readout.next_token import Readout, expectation
from vcritic.readout.prompts import DESCRIBE, Question
from vcritic.readout.results import Comparison, Description, Ranking, Score

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from vcritic.inference.chat import Conversation
    from vcritic.model.judges import Judge


class Critic(Runner):
    """A loaded model plus everything needed to ask it quality questions. Build it with ``load_critic``."""

    def __init__(
        self,
        model,
        processor,
        *,
        family: Family,
        device,
        dtype,
        source: str,
        info: dict | None = None,
        resolution: Resolution | None = None,
        fixed_shapes: bool | int = False,
        judge: Judge | None = None,
    ):
        from vcritic.model.judges import Judge
        from vcritic.model.readout_specs import VCRITIC

        super().__init__(model, processor, family=family, device=device, dtype=dtype, source=source)
        self.judge = judge or Judge(VCRITIC, None)  # how MOS is asked and read out; what the model was trained for
        self.info = info or {}
        self.resolution = resolution or Resolution()  # what the processor was set to (vcritic.model.resolution)
        self.fixed_shapes = fixed_shapes

    @property
    def pair_question(self) -> Question:
        return self.encoder.pair_question

    @property
    def fixed_shapes(self) -> FixedShapes | None:
        """Fixed compute shapes (:mod:`vcritic.inference.shapes`), or None: shapes follow the batch. Set it to True, a
        number of rows, or False: it chooses the batching strategy (:attr:`batching`) the encoder and forwards use."""
        return self.batching if self.batching.fixed else None

    @fixed_shapes.setter
    def fixed_shapes(self, value: bool | int | FixedShapes | None) -> None:
        self.encoder.batching = FixedShapes.of(value) or PADDED

    def prompt(self, question: Question) -> str:
        return self.encoder.prompt(question)

    def task_questions(self, tasks: Sequence[str]) -> tuple[Question, ...]:
        """The Questions for ``tasks`` (names from :func:`vcritic.readout.tasks.parse_tasks`), in column order: MOS as
        this model's read-out asks it (:attr:`judge`), the other tasks with vcritic's own questions."""
        from vcritic.readout.tasks import task_questions

        quality = self.judge.spec.quality_question()
        return tuple(quality if q.name == quality.name else q for q in task_questions(tasks))

    def untrained(self, tasks: Sequence[str]) -> tuple[str, ...]:
        """Which of ``tasks`` this model was not trained for (empty for a general model that declares none)."""
        return self.judge.untrained(tasks)

    def read_single(self, question: Question, batch: Any) -> Readout:
        """One question: the answer-word distribution at the last position of every prompt of an
        :meth:`Encoder.collate` batch (a pair, or one question per image)."""
        return expectation(self.last_logits(batch), *self.answer_tensors(question))

    def read_shared(self, questions: Sequence[Question], batch: Any) -> list[Readout]:
        """Many questions sharing each image's prompt prefix: every question about every image of a
        :meth:`Encoder.collate_questions` batch, one Readout per question; the image and the shared prefix are encoded
        once (see :mod:`vcritic.inference.shared_prefix`)."""
        if any(q.generates for q in questions):  # then the batch holds their full prompts under "generate"
            return self._read_and_generate(questions, batch)
        return self.readouts(questions, self.batching.run(self, batch, lambda chunk: answer_logits(self, chunk)))

    def _read_and_generate(self, questions: Sequence[Question], batch: dict[str, Any]) -> list[Readout]:
        """A batch with generated answers (a reasoning judge): the read questions as usual, then one greedy
        ``generate`` over the left-padded full prompts of the generated ones, each answer parsed for its rating."""
        read = [q for q in questions if not q.generates]
        found = iter(self.readouts(read, answer_logits(self, batch["read"])) if read else [])
        generated = iter(self._generated_readouts([q for q in questions if q.generates], batch))
        return [next(generated) if q.generates else next(found) for q in questions]

    def _generated_readouts(self, questions: Sequence[Question], batch: dict[str, Any]) -> list[Readout]:
        import torch

        from vcritic.model.readout_specs import SPECS

        inputs = self.to_device(batch["generate"])
        specs = [SPECS[q.readout] for q in questions]
        with torch.inference_mode():
            ids = self.model.generate(
                **inputs,
                max_new_tokens=max(spec.max_new_tokens for spec in specs),
                do_sample=False,
                num_beams=1,
                pad_token_id=self.encoder.pad_token_id,
            )
        texts = self.tokenizer.batch_decode(ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        n = batch["n_generate"]
        readouts = []
        for j, spec in enumerate(specs):
            ratings = [spec.parse_rating(text) for text in texts[j::n]]
            mean = torch.tensor([math.nan if r is None else r for r in ratings], dtype=torch.float32)
            # A generated number has no distribution: no spread, no level probabilities.
            readouts.append(
                Readout(mean=mean, std=torch.full_like(mean, math.nan), probs=mean.new_zeros((len(mean), 0)))
            )
        return readouts

    # -- Python API ----------------------------------------------------------------------------------------------
    def score(self, images, *, tasks: str | Sequence[str] = "mos", batch_size: int | str = 8) -> Score | list[Score]:
        """Read out ``tasks`` ("mos", "attributes", "authenticity", "all") for a path, a PIL image or a list of either.

        Returns one :class:`Score` for one image, a list for a list. MOS and attributes are 0-100 (higher = more),
        ``p_ai_generated`` 0-1. ``batch_size``: images per forward, or ``"auto"`` (from free GPU memory); a batch that
        runs out of GPU memory is run again at half the size, and the next batch is prepared while one runs
        (:func:`vcritic.engine.batches.in_batches`).
        """
        from vcritic.readout.results import scores_from_readouts
        from vcritic.readout.tasks import parse_tasks

        wanted = parse_tasks(tasks)
        questions = self.task_questions(wanted)
        if not questions:
            raise VcriticError("score needs at least one task", hint="tasks: mos, attributes, authenticity or all")
        pictures, single = _as_list(images)
        untrained = self.untrained(wanted)

        def launch(chunk) -> list[Readout]:
            items = [self.encoder.encode_questions(questions, _as_image(p)) for p in chunk]
            return self.read_shared(questions, self.encoder.collate_questions(items))

        def finish(readouts: list[Readout]) -> list[Score]:
            return scores_from_readouts(questions, readouts, untrained=untrained)

        results = in_batches(pictures, batch_size, launch, finish, self.device)
        return results[0] if single else results

    def compare(self, a, b=None, *, batch_size: int | str = 8) -> Comparison | list[Comparison]:
        """P(a has better quality than b), averaged over both presentation orders.

        ``compare(a, b)`` with a path or PIL image each gives one :class:`Comparison`; lists of equal length, or one
        list of ``(a, b)`` pairs, give a list. ``batch_size`` counts pairs, as in :meth:`score` (``"auto"``, halving
        on out-of-memory).
        """
        if b is None:
            if not isinstance(a, list | tuple) or not all(isinstance(pair, list | tuple) for pair in a):
                raise VcriticError("compare needs two images", hint="compare(a, b), or compare([(a, b), ...])")
            pairs, single = list(a), False
        else:
            firsts, single = _as_list(a)
            seconds, single_b = _as_list(b)
            if single != single_b or len(firsts) != len(seconds):
                raise VcriticError("compare(a, b) needs two images, or two lists of the same length")
            pairs = list(zip(firsts, seconds, strict=True))

        def launch(chunk) -> torch.Tensor:
            items = [item for x, y in chunk for item in self.encoder.encode_both_orders(_as_image(x), _as_image(y))]
            return symmetric_preference(self.read_single(self.pair_question, self.encoder.collate(items)).probs)

        def finish(probs: torch.Tensor) -> list[Comparison]:
            return [Comparison(p) for p in probs.tolist()]

        results = in_batches(pairs, batch_size, launch, finish, self.device)
        return results[0] if single else results

    def rank(self, images, *, per_image: int | None = None, every_pair: bool | None = None, seed: int = 0,
             batch_size: int = 8) -> Ranking:  # fmt: skip
        """Order images (paths or PIL images) best first from pairwise comparisons fitted by Bradley-Terry.

        The pairs are :func:`vcritic.readout.ranking.design_pairs` (every pair for small sets, else each image against
        ``per_image`` others, seeded), the same as ``vcritic rank`` picks for the same images, ``per_image`` and
        ``seed``. A path that cannot be read raises :class:`VcriticError`, as in :meth:`compare`.
        """
        import os

        from vcritic.readout.ranking import design_pairs, fit_bradley_terry, to_ranking

        pictures, _ = _as_list(images)
        pairs = design_pairs(len(pictures), per_image=per_image, every_pair=every_pair, seed=seed)
        found = self.compare([(pictures[i], pictures[j]) for i, j in pairs], batch_size=batch_size)
        probabilities = [c.p_a_better for c in found]
        paths = [str(p) if isinstance(p, str | os.PathLike) else None for p in pictures]
        labels = [path or f"image {i}" for i, path in enumerate(paths)]
        fit = fit_bradley_terry(len(pictures), pairs, probabilities, labels=labels)
        return to_ranking(fit, paths, pairs, probabilities)

    def describe(
        self,
        images,
        *,
        tasks: str | Sequence[str] = "all",
        max_new_tokens: int = 160,
        streamer=None,
    ) -> Description | list[Description]:
        """The model's written assessment of each image (greedy decoding: the same image gives the same text), with
        the ``tasks`` read out beside it (``"none"`` for text only). ``streamer``: a transformers streamer that
        receives the text as it is generated.

        The image and the shared prompt prefix are encoded once for the text and the numbers together (see
        :func:`vcritic.inference.shared_prefix.generate_and_answer`). Two passes remain where the model's ``generate``
        cannot continue from a cache (InstructBLIP, whose image tokens depend on the question anyway) or the prompt
        split does not check out (:class:`vcritic.inference.shared_prefix.PromptSplit`)."""
        from vcritic.readout.results import scores_from_readouts
        from vcritic.readout.tasks import parse_tasks

        pictures, single = _as_list(images)
        wanted = parse_tasks(tasks)
        questions = self.task_questions(wanted)
        untrained = self.untrained(wanted)
        options = {"max_new_tokens": max_new_tokens, "streamer": streamer}
        # Text only (tasks "none") is a single pass by itself: a plain generate. A reasoning judge's MOS is
        # generated too: its numbers come from score(), a second pass.
        one_pass = bool(questions) and cache_generator(self) is not None and not any(q.generates for q in questions)
        results = []
        for picture in map(_as_image, pictures):
            item = self.encoder.encode_questions((DESCRIBE, *questions), picture) if one_pass else {}
            if "prefix" in item:
                prompt_suffix, *question_suffixes = item["suffix_ids"]
                # One image, padded as is: generate continues from this batch's cache (not in fixed shapes).
                batch = collate_questions(self.encoder, [{"prefix": item["prefix"], "suffix_ids": question_suffixes}])
                text, logits = generate_and_answer(self, batch, prompt_suffix, **options)
                score = scores_from_readouts(questions, self.readouts(questions, logits), untrained=untrained)[0]
            else:  # no cache to continue from, or no shared prefix: generate and score, two passes
                text = self.generate(picture, **options)
                score = self.score(picture, tasks=wanted) if questions else None
            results.append(Description(text, score))
        return results[0] if single else results

    def chat(self, image, *, max_new_tokens: int = 256, temperature: float | None = None) -> Conversation:
        """A conversation about one image (a path or PIL image): ``.ask(question)`` answers with the earlier
        exchanges in the model's chat template, ``.reset()`` forgets them, ``.score()`` reads out the numbers.
        Greedy (the same questions give the same answers) unless ``temperature`` is given. The image is encoded once
        for all turns where the model's ``generate`` continues from a cache (see :mod:`vcritic.inference.chat`)."""
        from vcritic.inference.chat import Conversation

        return Conversation(self, _as_image(image), max_new_tokens=max_new_tokens, temperature=temperature)

    def generate(self, image: Image.Image, *, max_new_tokens: int = 160, streamer=None) -> str:
        """Greedy free text for the DESCRIBE question about one image, from the full prompt (no shared prefix)."""
        inputs = self.to_device(self.encoder.encode(DESCRIBE, [image]))
        return self.decode_text(self.model, inputs, max_new_tokens=max_new_tokens, streamer=streamer)


def _as_list(images) -> tuple[list, bool]:
    """A path, a PIL image or a list/tuple of either -> a list, and whether one image was given."""
    if not isinstance(images, list | tuple):
        return [images], True
    if not images:
        raise VcriticError("no images given", hint="pass a file path, a PIL image or a list of them")
    return list(images), False


def _as_image(item) -> Image.Image:
    """A path or PIL image as 8-bit RGB; loaded only when its batch runs, so long lists of paths stay cheap."""
    import os

    from PIL import Image

    from vcritic.base.images import UnreadableImageError, load_image, to_rgb

    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, str | os.PathLike):
        try:
            return load_image(item)
        except UnreadableImageError as err:  # its message says why, without the path
            raise VcriticError(f"cannot use {os.fspath(item)}: {err.message}") from None
    raise VcriticError(
        f"cannot read an image from a {type(item).__name__}", hint="pass a file path, a PIL image or a list of them"
    )


def symmetric_preference(probs: torch.Tensor) -> torch.Tensor:
    """P(A better) from readouts of interleaved (A,B), (B,A) prompts: mean of P(first|A,B) and P(second|B,A).

    Averaging both orders cancels the model's position bias, and makes compare(A,B) + compare(B,A) = 1 exactly.
    """
    p_first = probs[:, 0]
    return 0.5 * (p_first[0::2] + (1.0 - p_first[1::2]))

"""The model wrapper every command uses: encode a prompt with its images, batch, forward once, read out.

Work is split so that the expensive CPU part (decoding, resizing, tokenising: :meth:`Critic.encode`) can run in
DataLoader worker processes, while the main process only pads (:meth:`Critic.collate`) and runs the model
(:meth:`Critic.readout`). Padding is done here, on the left, per batch, and never by the processor: BLIP-family
processors pad the text *before* prepending the image query tokens, which would put pad tokens between the image and
the prompt and make a score depend on its batch neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vcritic.engine.batches import in_batches
from vcritic.errors import VcriticError
from vcritic.model.compat import prefix_cache_supported, takes_argument
from vcritic.model.resolution import Resolution
from vcritic.readout.next_token import Readout, answer_token_ids, expectation
from vcritic.readout.prompts import COMPARE, COMPARE_SIDE_BY_SIDE, DESCRIBE, Question, render_prompt
from vcritic.readout.results import Comparison, Description, Ranking, Score

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from vcritic.inference.chat import Conversation
    from vcritic.inference.shapes import FixedShapes, ShapeGroups
    from vcritic.model.judges import Judge

# Token-aligned inputs: left-padded to the longest prompt in the batch.
_TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "labels")
# Padding values of the token-aligned inputs that are not 0 (labels: -100, ignored by the loss).
_PAD_FILL = {"labels": -100}
# InstructBLIP's Q-Former sees the instruction too; it is bidirectional with a mask, so right padding is fine.
_QFORMER_KEYS = ("qformer_input_ids", "qformer_attention_mask")
# Per-prompt stacks of image tiles, [1, tiles, ...] (Idefics3/SmolVLM split an image into as many tiles as its size
# needs): padded with all-zero tiles, which those models drop before the vision tower.
_IMAGE_STACK_KEYS = ("pixel_values", "pixel_attention_mask")
# Model types whose processor takes a single image per prompt and prepends its query tokens itself.
SINGLE_IMAGE_FAMILIES = frozenset({"blip-2", "instructblip", "instructblipvideo"})


@dataclass(frozen=True)
class Family:
    """What the scoring code needs to know about a model family."""

    model_type: str
    multi_image: bool  # several images in one prompt
    image_placeholder: str | None  # the processor's image token in the text, None if it prepends images itself

    @classmethod
    def detect(cls, model_type: str, processor) -> Family:
        if model_type in SINGLE_IMAGE_FAMILIES:
            return cls(model_type, multi_image=False, image_placeholder=None)
        token = getattr(processor, "image_token", None)
        return cls(model_type, multi_image=True, image_placeholder=getattr(token, "content", token))


class Encoder:
    """The CPU half of a :class:`Critic`: prompt rendering, tokenising and padding, no model.

    It is small and picklable, so DataLoader workers get a copy of it and never of the model.
    """

    def __init__(self, processor, family: Family):
        self.processor = processor
        self.family = family
        tokenizer = getattr(processor, "tokenizer", processor)
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        qformer = getattr(processor, "qformer_tokenizer", None)
        self.qformer_pad_id = (qformer.pad_token_id or 0) if qformer is not None else 0
        self._prompts: dict[tuple[str, str | None], str] = {}
        self._splits: dict[tuple[str, ...], Any] = {}  # shared_prefix.PromptSplit per question set
        # vcritic.inference.shapes.FixedShapes when the critic reads in fixed shapes (--reproducible): collate then
        # groups
        # items by shape instead of padding them. Set through Critic.fixed_shapes.
        self.fixed_shapes: FixedShapes | None = None
        # Whether several questions about an image share one prefix pass (vcritic.inference.shared_prefix); set by the
        # Critic
        # from vcritic.model.compat.prefix_cache_supported.
        self.shared_prefix = True

    @property
    def pair_question(self) -> Question:
        return COMPARE if self.family.multi_image else COMPARE_SIDE_BY_SIDE

    def prompt(self, question: Question, instruction: str | None = None) -> str:
        """The rendered prompt, ending with the answer prefix; ``instruction`` (a paraphrase, for training) defaults
        to the canonical one that scoring asks."""
        key = (question.name, instruction)
        if key in self._prompts:
            return self._prompts[key]
        text = render_prompt(
            self.processor, question, image_placeholder=self.family.image_placeholder, instruction=instruction
        )
        # Free-text instructions (stage-3 chat) are one-offs: only the question's own paraphrases are kept.
        if instruction is None or instruction in question.instructions:
            self._prompts[key] = text
        return text

    def encode(
        self, question: Question, images: Sequence[Image.Image], instruction: str | None = None
    ) -> dict[str, Any]:
        """Tokenise one prompt with its images, unpadded (a batch of one)."""
        if len(images) != question.n_images:
            raise ValueError(f"{question.name} takes {question.n_images} image(s), got {len(images)}")
        from vcritic.model.resolution import fit_image

        text = self.prompt(question, instruction)
        images = [fit_image(self.processor, image) for image in images]
        return dict(self.processor(images=images, text=[text], return_tensors="pt"))

    def encode_questions(self, questions: Sequence[Question], image: Image.Image) -> dict[str, Any]:
        """One image with several questions, encoded so that the image is encoded once (see shared_prefix).

        Questions that are answered by generating (a reasoning judge's MOS) get full prompts of their own under
        ``"generate"``; the others share the prefix as usual."""
        from vcritic.inference.shared_prefix import encode_questions

        generating = [q for q in questions if q.generates]
        if not generating:
            return encode_questions(self, questions, image)
        read = [q for q in questions if not q.generates]
        item = encode_questions(self, read, image) if read else {}
        return {"read": item, "generate": [self.encode(q, [image]) for q in generating]}

    def collate_questions(self, items: Sequence[dict[str, Any]]) -> dict[str, Any] | ShapeGroups:
        """A batch of :meth:`encode_questions` items for :meth:`Critic.read`: padded (see
        :func:`vcritic.inference.shared_prefix.collate_questions`), or grouped by shape in fixed-shapes mode."""
        if items and "generate" in items[0]:
            if self.fixed_shapes is not None:
                raise VcriticError(
                    "a reasoning judge's generated answers cannot be read in fixed shapes",
                    hint="leave out --reproducible, or use a judge with a level-word read-out",
                )
            from vcritic.inference.shared_prefix import collate_questions

            read = [item["read"] for item in items]
            return {
                "read": collate_questions(self, read) if read[0] else None,
                "generate": self.pad_batch([encoding for item in items for encoding in item["generate"]]),
                "n_generate": len(items[0]["generate"]),
            }
        if self.fixed_shapes is not None:
            from vcritic.inference.shapes import group

            return group(items, questions=True)
        from vcritic.inference.shared_prefix import collate_questions

        return collate_questions(self, items)

    def encode_pair(self, first: Image.Image, second: Image.Image) -> dict[str, Any]:
        """One comparison prompt; single-image families get the pair as one side-by-side picture."""
        from vcritic.base.images import side_by_side

        question = self.pair_question
        images = [first, second] if question.n_images == 2 else [side_by_side(first, second)]
        return self.encode(question, images)

    def encode_both_orders(self, a: Image.Image, b: Image.Image) -> list[dict[str, Any]]:
        """(a, b) then (b, a): the interleaving :func:`symmetric_preference` reads back."""
        return [self.encode_pair(a, b), self.encode_pair(b, a)]

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any] | ShapeGroups:
        """A batch of encoded prompts for :meth:`Critic.last_logits`: :meth:`pad_batch`, or grouped by shape in
        fixed-shapes mode (:mod:`vcritic.inference.shapes`)."""
        if self.fixed_shapes is not None:
            from vcritic.inference.shapes import group

            return group(items, questions=False)
        return self.pad_batch(items)

    def pad_batch(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Left-pad encoded items into one batch, so every prompt ends at the last position."""
        import torch

        length = max(item["input_ids"].shape[1] for item in items)
        qlength = max((item["qformer_input_ids"].shape[1] for item in items if "qformer_input_ids" in item), default=0)
        batch: dict[str, Any] = {}
        for key in items[0]:
            tensors = [item[key] for item in items]
            if key in _TEXT_KEYS:
                fill = self.pad_token_id if key == "input_ids" else _PAD_FILL.get(key, 0)
                batch[key] = torch.cat([_pad(t, length, fill, left=True) for t in tensors])
            elif key in _QFORMER_KEYS:
                fill = self.qformer_pad_id if key == "qformer_input_ids" else 0
                batch[key] = torch.cat([_pad(t, qlength, fill, left=False) for t in tensors])
            elif key in _IMAGE_STACK_KEYS and len({t.shape[1:] for t in tensors}) > 1:
                batch[key] = torch.cat([_pad_images(t, max(t.shape[1] for t in tensors)) for t in tensors])
            elif isinstance(tensors[0], torch.Tensor):
                batch[key] = torch.cat(tensors)
            else:
                batch[key] = tensors
        return batch


class Critic:
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
        from vcritic.model.judges import VCRITIC, Judge

        self.judge = judge or Judge(VCRITIC, None)  # how MOS is asked and read out; what the model was trained for
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.encoder = Encoder(processor, family)
        self.family = family
        self.device = device
        self.dtype = dtype
        self.source = source
        self.info = info or {}
        self.resolution = resolution or Resolution()  # what the processor was set to (vcritic.model.resolution)
        self.fixed_shapes = fixed_shapes
        self._token_ids: dict[str, list[int]] = {}
        self._answer_tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        forward = type(self._base_model()).forward
        self._accepts_logits_to_keep = takes_argument(forward, "logits_to_keep")
        self._accepts_use_cache = takes_argument(forward, "use_cache", any_keyword=True)
        self.encoder.shared_prefix = prefix_cache_supported(self._base_model())

    def _base_model(self):
        get_base = getattr(self.model, "get_base_model", None)
        return get_base() if get_base else self.model

    @property
    def pair_question(self) -> Question:
        return self.encoder.pair_question

    @property
    def fixed_shapes(self) -> FixedShapes | None:
        """Fixed compute shapes (:mod:`vcritic.inference.shapes`), or None: shapes follow the batch. Set it to True, a
        number of rows, or False. Kept on the encoder, which groups the items; the forwards here run the groups."""
        return self.encoder.fixed_shapes

    @fixed_shapes.setter
    def fixed_shapes(self, value: bool | int | FixedShapes | None) -> None:
        from vcritic.inference.shapes import FixedShapes

        self.encoder.fixed_shapes = FixedShapes.of(value)

    def prompt(self, question: Question) -> str:
        return self.encoder.prompt(question)

    def task_questions(self, tasks: Sequence[str]) -> tuple[Question, ...]:
        """The Questions for ``tasks`` (names from :func:`vcritic.readout.tasks.parse_tasks`), in column order: MOS as
        this
        model's read-out asks it (:attr:`judge`), the other tasks with vcritic's own questions."""
        from vcritic.readout.tasks import task_questions

        quality = self.judge.spec.quality_question()
        return tuple(quality if q.name == quality.name else q for q in task_questions(tasks))

    def untrained(self, tasks: Sequence[str]) -> tuple[str, ...]:
        """Which of ``tasks`` this model was not trained for (empty for a general model that declares none)."""
        return self.judge.untrained(tasks)

    def token_ids(self, question: Question) -> list[int]:
        if question.name not in self._token_ids:
            self._token_ids[question.name] = answer_token_ids(self.tokenizer, question, model=self.source)
        return self._token_ids[question.name]

    def answer_tensors(self, question: Question) -> tuple[torch.Tensor, torch.Tensor]:
        """The answer words' token ids and values on the model's device, made once: building them per batch would
        copy them from pageable host memory, a host sync that keeps the next batch from being launched early."""
        if question.name not in self._answer_tensors:
            import torch

            ids = torch.tensor(self.token_ids(question), dtype=torch.long, device=self.device)
            values = torch.tensor(question.values, dtype=torch.float32, device=self.device)
            self._answer_tensors[question.name] = (ids, values)
        return self._answer_tensors[question.name]

    # -- model side ----------------------------------------------------------------------------------------------
    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Tensors to the model's device; floating-point ones (pixels) to its dtype, unless the file pipeline's
        workers already cast them (:func:`cast_floating`)."""
        import torch

        inputs = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, non_blocking=True)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            inputs[key] = value
        return inputs

    def last_logits(self, batch: dict[str, Any] | ShapeGroups) -> torch.Tensor:
        """One forward pass over a collated batch (one per group of fixed shape): next-token logits at the last
        position, ``[B, vocab]``."""
        import torch

        from vcritic.inference.shapes import ShapeGroups, run_fixed

        if isinstance(batch, ShapeGroups):
            return run_fixed(self, batch, self.last_logits)
        inputs = self.to_device(batch)
        if self._accepts_logits_to_keep:
            inputs["logits_to_keep"] = 1  # only the answer position: skips a [B, L, vocab] projection
        if self._accepts_use_cache:
            inputs["use_cache"] = False
        with torch.inference_mode():
            return self.model(**inputs).logits[:, -1, :]

    def readout(self, question: Question, batch: dict[str, Any]) -> Readout:
        """One forward pass over a collated batch; the answer-word distribution at the last position."""
        return expectation(self.last_logits(batch), *self.answer_tensors(question))

    def read(self, questions: Sequence[Question], batch: dict[str, Any] | ShapeGroups) -> list[Readout]:
        """Every question about every image of a :meth:`Encoder.collate_questions` batch, one Readout per question;
        the image and the shared prompt prefix are encoded once (see :mod:`vcritic.inference.shared_prefix`)."""
        from vcritic.inference.shapes import ShapeGroups, run_fixed
        from vcritic.inference.shared_prefix import answer_logits

        if isinstance(batch, ShapeGroups):
            return self._readouts(questions, run_fixed(self, batch, lambda chunk: answer_logits(self, chunk)))
        if "generate" in batch:
            return self._read_and_generate(questions, batch)
        return self._readouts(questions, answer_logits(self, batch))

    def _read_and_generate(self, questions: Sequence[Question], batch: dict[str, Any]) -> list[Readout]:
        """A batch with generated answers (a reasoning judge): the read questions as usual, then one greedy
        ``generate`` over the left-padded full prompts of the generated ones, each answer parsed for its rating."""
        from vcritic.inference.shared_prefix import answer_logits

        read = [q for q in questions if not q.generates]
        found = iter(self._readouts(read, answer_logits(self, batch["read"])) if read else [])
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

    def _readouts(self, questions: Sequence[Question], logits: torch.Tensor) -> list[Readout]:
        """``[n_images, n_questions, vocab]`` answer logits -> one Readout per question."""
        return [expectation(logits[:, j], *self.answer_tensors(q)) for j, q in enumerate(questions)]

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
            return self.read(questions, self.encoder.collate_questions(items))

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
            return symmetric_preference(self.readout(self.pair_question, self.encoder.collate(items)).probs)

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
        cannot
        continue from a cache (InstructBLIP, whose image tokens depend on the question anyway) or the prompt split
        does not check out (:class:`vcritic.inference.shared_prefix.PromptSplit`)."""
        from vcritic.inference.shared_prefix import cache_generator, collate_questions, generate_and_answer
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
                score = scores_from_readouts(questions, self._readouts(questions, logits), untrained=untrained)[0]
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

    def decode_text(
        self, model, inputs: dict[str, Any], *, max_new_tokens: int, streamer=None, temperature: float | None = None
    ) -> str:
        """``model.generate`` over one prompt, as text: the only place vcritic generates. Greedy (deterministic) unless
        a ``temperature`` is given (chat's ``--temperature``), which samples with the model's own top-k/top-p."""
        import torch

        sampling = {"do_sample": True, "temperature": temperature} if temperature else {"do_sample": False}
        with torch.inference_mode():
            ids = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                **sampling,
                num_beams=1,
                pad_token_id=self.encoder.pad_token_id,
                streamer=streamer,
            )
        prompt = inputs["input_ids"][0]
        generated = ids[0]
        # Decoder-only wrappers return prompt + answer; BLIP-family generate returns only the new tokens.
        if generated.shape[0] >= prompt.shape[0] and torch.equal(generated[: prompt.shape[0]], prompt):
            generated = generated[prompt.shape[0] :]
        return self.tokenizer.decode(generated, skip_special_tokens=True).strip()


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


def cast_floating(batch, dtype):
    """A collated batch (nested dicts allowed) with its floating-point tensors, the pixels, in ``dtype``: the cast
    :meth:`Critic.to_device` makes, done before the copy so that a bfloat16 batch crosses process boundaries, pinning
    and the copy to the GPU at half the bytes. fp32 -> bf16/fp16 rounds to nearest even on CPU and GPU alike."""
    import torch

    if isinstance(batch, dict):
        return {key: cast_floating(value, dtype) for key, value in batch.items()}
    if isinstance(batch, torch.Tensor) and batch.is_floating_point():
        return batch.to(dtype)
    return batch


def _pad(tensor: torch.Tensor, length: int, fill: int, *, left: bool) -> torch.Tensor:
    import torch

    missing = length - tensor.shape[1]
    if missing <= 0:
        return tensor
    pad = torch.full((tensor.shape[0], missing), fill, dtype=tensor.dtype)
    return torch.cat([pad, tensor] if left else [tensor, pad], dim=1)


def _pad_images(tensor: torch.Tensor, tiles: int) -> torch.Tensor:
    """A ``[1, n, ...]`` tile stack padded with zeros to ``tiles`` tiles."""
    import torch

    missing = tiles - tensor.shape[1]
    if missing <= 0:
        return tensor
    return torch.cat([tensor, tensor.new_zeros((tensor.shape[0], missing, *tensor.shape[2:]))], dim=1)

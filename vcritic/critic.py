"""The model wrapper every command uses: encode a prompt with its images, batch, forward once, read out.

Work is split so that the expensive CPU part (decoding, resizing, tokenising: :meth:`Critic.encode`) can run in
DataLoader worker processes, while the main process only pads (:meth:`Critic.collate`) and runs the model
(:meth:`Critic.readout`). Padding is done here, on the left, per batch, and never by the processor: BLIP-family
processors pad the text *before* prepending the image query tokens, which would put pad tokens between the image and
the prompt and make a score depend on its batch neighbours.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vcritic.prompts import COMPARE, COMPARE_SIDE_BY_SIDE, QUALITY, Question, render_prompt
from vcritic.readout import Readout, answer_token_ids, expectation

if TYPE_CHECKING:
    import torch
    from PIL import Image

# Token-aligned inputs: left-padded to the longest prompt in the batch.
_TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "labels")
# Padding values of the token-aligned inputs that are not 0 (labels: -100, ignored by the loss).
_PAD_FILL = {"labels": -100}
# InstructBLIP's Q-Former sees the instruction too; it is bidirectional with a mask, so right padding is fine.
_QFORMER_KEYS = ("qformer_input_ids", "qformer_attention_mask")
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


@dataclass
class Score:
    """MOS on a 0-100 scale (higher is better) and the spread of the model's rating distribution."""

    mos: float
    mos_std: float
    probs: dict[str, float] = field(default_factory=dict)


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
        text = self.prompt(question, instruction)
        return dict(self.processor(images=list(images), text=[text], return_tensors="pt"))

    def encode_pair(self, first: Image.Image, second: Image.Image) -> dict[str, Any]:
        """One comparison prompt; single-image families get the pair as one side-by-side picture."""
        from vcritic.images import side_by_side

        question = self.pair_question
        images = [first, second] if question.n_images == 2 else [side_by_side(first, second)]
        return self.encode(question, images)

    def encode_both_orders(self, a: Image.Image, b: Image.Image) -> list[dict[str, Any]]:
        """(a, b) then (b, a): the interleaving :func:`symmetric_preference` reads back."""
        return [self.encode_pair(a, b), self.encode_pair(b, a)]

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
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
            elif isinstance(tensors[0], torch.Tensor):
                batch[key] = torch.cat(tensors)
            else:
                batch[key] = tensors
        return batch


class Critic:
    """A loaded model plus everything needed to ask it quality questions. Build it with ``load_critic``."""

    def __init__(self, model, processor, *, family: Family, device, dtype, source: str, info: dict | None = None):
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.encoder = Encoder(processor, family)
        self.family = family
        self.device = device
        self.dtype = dtype
        self.source = source
        self.info = info or {}
        self._token_ids: dict[str, list[int]] = {}
        forward = inspect.signature(type(self._base_model()).forward).parameters
        self._accepts_logits_to_keep = "logits_to_keep" in forward
        self._accepts_use_cache = "use_cache" in forward or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in forward.values()
        )

    def _base_model(self):
        get_base = getattr(self.model, "get_base_model", None)
        return get_base() if get_base else self.model

    @property
    def pair_question(self) -> Question:
        return self.encoder.pair_question

    def prompt(self, question: Question) -> str:
        return self.encoder.prompt(question)

    def token_ids(self, question: Question) -> list[int]:
        if question.name not in self._token_ids:
            self._token_ids[question.name] = answer_token_ids(self.tokenizer, question)
        return self._token_ids[question.name]

    # -- model side ----------------------------------------------------------------------------------------------
    def readout(self, question: Question, batch: dict[str, Any]) -> Readout:
        """One forward pass over a collated batch; the answer-word distribution at the last position."""
        import torch

        inputs = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, non_blocking=True)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            inputs[key] = value
        if self._accepts_logits_to_keep:
            inputs["logits_to_keep"] = 1  # only the answer position: skips a [B, L, vocab] projection
        if self._accepts_use_cache:
            inputs["use_cache"] = False
        with torch.inference_mode():
            logits = self.model(**inputs).logits[:, -1, :]
            return expectation(logits, self.token_ids(question), question.values)

    # -- convenience API for in-memory images --------------------------------------------------------------------
    def score(self, images: Sequence[Image.Image], batch_size: int = 8) -> list[Score]:
        """MOS (0-100, higher is better) for each image. Images are converted with ``images.to_rgb``."""
        from vcritic.images import to_rgb

        words = [w.strip() for w in QUALITY.words]
        results: list[Score] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = self.encoder.collate([self.encoder.encode(QUALITY, [to_rgb(image)]) for image in chunk])
            out = self.readout(QUALITY, batch)
            for i in range(len(chunk)):
                probs = dict(zip(words, out.probs[i].tolist(), strict=True))
                results.append(Score(float(out.mean[i]), float(out.std[i]), probs))
        return results

    def compare(self, pairs: Sequence[tuple[Image.Image, Image.Image]], batch_size: int = 8) -> list[float]:
        """P(first image of each pair has better quality than the second), averaged over both orders."""
        from vcritic.images import to_rgb

        probabilities: list[float] = []
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            items = []
            for a, b in chunk:
                a, b = to_rgb(a), to_rgb(b)
                items += self.encoder.encode_both_orders(a, b)
            out = self.readout(self.pair_question, self.encoder.collate(items))
            probabilities += symmetric_preference(out.probs).tolist()
        return probabilities


def symmetric_preference(probs: torch.Tensor) -> torch.Tensor:
    """P(A better) from readouts of interleaved (A,B), (B,A) prompts: mean of P(first|A,B) and P(second|B,A).

    Averaging both orders cancels the model's position bias, and makes compare(A,B) + compare(B,A) = 1 exactly.
    """
    p_first = probs[:, 0]
    return 0.5 * (p_first[0::2] + (1.0 - p_first[1::2]))


def _pad(tensor: torch.Tensor, length: int, fill: int, *, left: bool) -> torch.Tensor:
    import torch

    missing = length - tensor.shape[1]
    if missing <= 0:
        return tensor
    pad = torch.full((tensor.shape[0], missing), fill, dtype=tensor.dtype)
    return torch.cat([pad, tensor] if left else [tensor, pad], dim=1)

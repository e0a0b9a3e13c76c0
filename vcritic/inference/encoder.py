"""The CPU half of a critic: a prompt and its images encoded (tokens, pixels), and encoded items into a batch.

Work is split so that the expensive CPU part (decoding, resizing, tokenising: :meth:`Encoder.encode`) can run in
DataLoader worker processes, while the main process only pads (:meth:`Encoder.collate`) and runs the model
(:mod:`vcritic.inference.runner`). Padding is done here, on the left, per batch, and never by the processor:
BLIP-family processors pad the text *before* prepending the image query tokens, which would put pad tokens between
the image and the prompt and make a score depend on its batch neighbours. How encoded items become a batch (padded,
or grouped by shape for ``--reproducible``) is the encoder's batching strategy (:mod:`vcritic.inference.batching`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vcritic.inference.batching import PADDED
from vcritic.inference.shared_prefix import encode_questions
from vcritic.readout.prompts import COMPARE, COMPARE_SIDE_BY_SIDE, Question, render_prompt

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from vcritic.inference.batching import Batching

# Token-aligned inputs: left-padded to the longest prompt in the batch.
TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "labels")
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
        # The shared_prefix.PromptSplit of each question set (by question names), made and checked once by
        # vcritic.inference.shared_prefix.encode_questions.
        self.prompt_splits: dict[tuple[str, ...], Any] = {}
        # How encoded items become a batch and how a batch runs: padded, or in fixed shapes (--reproducible). Chosen
        # by the Critic (Critic.fixed_shapes); kept here because collate runs in DataLoader workers.
        self.batching: Batching = PADDED
        # Whether several questions about an image share one prefix pass (vcritic.inference.shared_prefix); set by the
        # runner from vcritic.model.compat.prefix_cache_supported.
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
        generating = [q for q in questions if q.generates]
        if not generating:
            return encode_questions(self, questions, image)
        read = [q for q in questions if not q.generates]
        item = encode_questions(self, read, image) if read else {}
        return {"read": item, "generate": [self.encode(q, [image]) for q in generating]}

    def collate_questions(self, items: Sequence[dict[str, Any]]) -> Any:
        """A batch of :meth:`encode_questions` items for :meth:`Critic.read_shared`, as the batching strategy makes it:
        padded (:func:`vcritic.inference.shared_prefix.collate_questions`), or grouped by shape in fixed shapes."""
        return self.batching.collate_questions(self, items)

    def encode_pair(self, first: Image.Image, second: Image.Image) -> dict[str, Any]:
        """One comparison prompt; single-image families get the pair as one side-by-side picture."""
        from vcritic.base.images import side_by_side

        question = self.pair_question
        images = [first, second] if question.n_images == 2 else [side_by_side(first, second)]
        return self.encode(question, images)

    def encode_both_orders(self, a: Image.Image, b: Image.Image) -> list[dict[str, Any]]:
        """(a, b) then (b, a): the interleaving :func:`symmetric_preference` reads back."""
        return [self.encode_pair(a, b), self.encode_pair(b, a)]

    def collate(self, items: Sequence[dict[str, Any]]) -> Any:
        """A batch of encoded prompts for :meth:`Runner.last_logits`, as the batching strategy makes it:
        :meth:`pad_batch`, or grouped by shape in fixed shapes (:mod:`vcritic.inference.shapes`)."""
        return self.batching.collate(self, items)

    def pad_batch(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Left-pad encoded items into one batch, so every prompt ends at the last position."""
        import torch

        length = max(item["input_ids"].shape[1] for item in items)
        qlength = max((item["qformer_input_ids"].shape[1] for item in items if "qformer_input_ids" in item), default=0)
        batch: dict[str, Any] = {}
        for key in items[0]:
            tensors = [item[key] for item in items]
            if key in TEXT_KEYS:
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

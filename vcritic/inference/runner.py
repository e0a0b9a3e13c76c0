"""The model half of a critic: a loaded model and its encoder, and the forwards every read-out is made of.

:class:`Runner` moves a batch to the model's device, runs the forward that gives next-token logits at the last
position, keeps the answer words' token tensors on the device, and decodes generated text. The shared-prefix reads
(:mod:`vcritic.inference.shared_prefix`), the batching strategies (:mod:`vcritic.inference.batching`,
:mod:`vcritic.inference.shapes`) and a conversation (:mod:`vcritic.inference.chat`) are built on it, and
:class:`vcritic.inference.critic.Critic`, the Python API, is a Runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vcritic.inference.encoder import Encoder, Family
from vcritic.model.compat import prefix_cache_supported, takes_argument
from vcritic.readout.next_token import Readout, answer_token_ids, expectation

if TYPE_CHECKING:
    import torch

    from vcritic.inference.batching import Batching
    from vcritic.readout.prompts import Question


class Runner:
    """A loaded model with its processor and :class:`Encoder`, on one device and dtype."""

    def __init__(self, model, processor, *, family: Family, device, dtype, source: str):
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.encoder = Encoder(processor, family)
        self.family = family
        self.device = device
        self.dtype = dtype
        self.source = source  # the model's name, for messages
        self._token_ids: dict[str, list[int]] = {}
        self._answer_tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        forward = type(self.base_model()).forward
        # Whether the forward can skip the [B, L, vocab] projection of every position, and be told to keep no cache.
        self.accepts_logits_to_keep = takes_argument(forward, "logits_to_keep")
        self.accepts_use_cache = takes_argument(forward, "use_cache", any_keyword=True)
        self.encoder.shared_prefix = prefix_cache_supported(self.base_model())

    def base_model(self):
        """The model without a PEFT adapter's wrapper (the model itself when there is none): the one whose forward
        and cache are called directly."""
        get_base = getattr(self.model, "get_base_model", None)
        return get_base() if get_base else self.model

    @property
    def batching(self) -> Batching:
        """How this runner's batches are collated and run (:mod:`vcritic.inference.batching`); kept on the encoder."""
        return self.encoder.batching

    def token_ids(self, question: Question) -> list[int]:
        """The first token id of each of ``question``'s answer words."""
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

    def readouts(self, questions: Sequence[Question], logits: torch.Tensor) -> list[Readout]:
        """``[n_images, n_questions, vocab]`` answer logits -> one Readout per question."""
        return [expectation(logits[:, j], *self.answer_tensors(q)) for j, q in enumerate(questions)]

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

    def last_logits(self, batch: Any) -> torch.Tensor:
        """Next-token logits at the last position of every prompt of an :meth:`Encoder.collate` batch, ``[B, vocab]``:
        one forward, or one per chunk of fixed shape (:attr:`batching`)."""
        return self.batching.run(self, batch, self.padded_last_logits)

    def padded_last_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        """One forward pass over a padded batch: next-token logits at the last position, ``[B, vocab]``."""
        import torch

        inputs = self.to_device(batch)
        if self.accepts_logits_to_keep:
            inputs["logits_to_keep"] = 1  # only the answer position: skips a [B, L, vocab] projection
        if self.accepts_use_cache:
            inputs["use_cache"] = False
        with torch.inference_mode():
            return self.model(**inputs).logits[:, -1, :]

    def decode_text(
        self, model, inputs: dict[str, Any], *, max_new_tokens: int, streamer=None, temperature: float | None = None
    ) -> str:
        """``model.generate`` over one prompt, as text (the free text of ``describe`` and ``chat``). Greedy
        (deterministic) unless a ``temperature`` is given (chat's ``--temperature``), which samples with the model's
        own top-k/top-p."""
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


def cast_floating(batch, dtype):
    """A collated batch (nested dicts allowed) with its floating-point tensors, the pixels, in ``dtype``: the cast
    :meth:`Runner.to_device` makes, done before the copy so that a bfloat16 batch crosses process boundaries, pinning
    and the copy to the GPU at half the bytes. fp32 -> bf16/fp16 rounds to nearest even on CPU and GPU alike."""
    import torch

    if isinstance(batch, dict):
        return {key: cast_floating(value, dtype) for key, value in batch.items()}
    if isinstance(batch, torch.Tensor) and batch.is_floating_point():
        return batch.to(dtype)
    return batch

"""A conversation about one image (``vcritic chat``, :meth:`Critic.chat`): the history kept in the model's chat
template, the image encoded once.

Every question is asked with the whole history rendered as the chat template renders it (:func:`render_prompt`
with ``history``), so the model reads the dialogue token for token as the template gives it; the first turn is the
stage-3 training prompt (the CHAT question, the user's words as its instruction).

The image is encoded once, with the key/value-cache continuation ``describe`` uses
(:mod:`vcritic.inference.shared_prefix`):
the first turn runs its prompt, all but the last token, through the whole model (vision tower included) and
``generate`` continues from that cache. A later turn keeps the cache up to the first token where its prompt differs
from the previous one and runs only the rest: the previous answer as the template renders it (which need not be the
tokens generated: LLaVA's "ASSISTANT: " separator merges with the answer's first word) and the new question. Where
the tokens in common do not reach past the image, the whole prompt runs again, image included.

- Models whose own ``generate`` cannot continue from a cache (InstructBLIP, whose Q-Former reads the text anyway)
  generate from the full prompt, image included, on every turn.
- A recurrent state (the linear-attention layers of Qwen3.5) cannot be cropped back to a prefix. For such models
  the first turn runs the prompt up to the end of the image and keeps that cache; every turn continues from a copy
  of it, so the image is still encoded once while the text after it runs again each turn.
- Qwen2-VL/2.5-VL keep the image's rotary offset (``rope_deltas``) on the model, where any other image (a score,
  another conversation) replaces it: a conversation puts its own back before each turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vcritic.errors import VcriticError
from vcritic.model.compat import per_token_cache
from vcritic.readout.prompts import CHAT, render_prompt

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from vcritic.inference.critic import Critic
    from vcritic.readout.results import Score

DEFAULT_MAX_NEW_TOKENS = 256


class Conversation:
    """Questions about one image, each answered with the earlier exchanges in context. Made by :meth:`Critic.chat`."""

    def __init__(
        self,
        critic: Critic,
        image: Image.Image,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float | None = None,
    ):
        from vcritic.model.resolution import fit_image

        if max_new_tokens < 1:
            raise VcriticError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if temperature is not None and not temperature > 0:
            raise VcriticError(f"temperature must be above 0, got {temperature}", hint="leave it out for greedy")
        self.critic = critic
        self.image = fit_image(critic.processor, image)  # once, not once per turn
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.exchanges: list[tuple[str, str]] = []  # (question, answer), oldest first
        self._cache = None  # the KV cache of (a prefix of) the last prompt, image included
        self._cached_ids: torch.Tensor | None = None  # that prompt's token ids
        self._image_end: int | None = None  # the cache is reusable only if it reaches past the image tokens
        self._rope_deltas = None
        # Recurrent caches are not cropped: _cache then holds the prompt up to the image end, never extended.
        self._recurrent = not per_token_cache(critic.base_model())

    def ask(self, question: str, *, streamer=None) -> str:
        """The model's answer to ``question`` given the exchanges so far, which it joins. ``streamer``: a
        transformers streamer that receives the answer as it is generated."""
        words = question.strip()
        if not words:
            raise VcriticError("the question is empty", hint="ask something about the image")
        critic = self.critic
        inputs = dict(critic.processor(images=[self.image], text=[self.prompt(words)], return_tensors="pt"))
        answer = self._answer(inputs, streamer)
        self.exchanges.append((words, answer))
        return answer

    def prompt(self, question: str) -> str:
        """The text the model reads for ``question`` after the exchanges so far, up to its answer."""
        placeholder = self.critic.family.image_placeholder
        return render_prompt(
            self.critic.processor, CHAT, image_placeholder=placeholder, instruction=question, history=self.exchanges
        )

    def reset(self) -> None:
        """Forget the exchanges. The image's cache is kept: the next prompt starts with the same image."""
        self.exchanges.clear()

    def score(self, tasks: str = "all") -> Score:
        """The image's numbers (:meth:`Critic.score`: the answer-word read-outs, not parsed from any answer)."""
        return self.critic.score(self.image, tasks=tasks)

    # -- one turn ------------------------------------------------------------------------------------------------
    def _answer(self, inputs: dict[str, Any], streamer) -> str:
        import torch

        from vcritic.inference.encoder import TEXT_KEYS
        from vcritic.inference.shared_prefix import cache_generator, encode_prefix
        from vcritic.model.compat import crop_cache, generate_cache_argument, rope_deltas, set_rope_deltas

        critic = self.critic
        options = {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "streamer": streamer}
        generator = cache_generator(critic)
        if generator is None:
            return critic.decode_text(critic.model, critic.to_device(inputs), **options)
        ids = inputs["input_ids"]
        # Taken out for the turn: one interrupted half-way (Ctrl-C, out of memory) leaves no half-extended cache.
        cache, self._cache = self._cache, None
        reuse = self._reusable(cache, ids[0])
        model = critic.base_model()
        if reuse is None:
            end = _image_end(critic, ids[0]) if self._recurrent else len(ids[0]) - 1
            if end is None:  # no image tokens to stop after: nothing reusable, a plain generate
                return critic.decode_text(critic.model, critic.to_device(inputs), **options)
            head = {key: value[:, :end] if key in TEXT_KEYS else value for key, value in inputs.items()}
            with torch.inference_mode():
                _, _, cache = encode_prefix(critic, head)
            self._image_end = _image_end(critic, ids[0])
            self._rope_deltas = rope_deltas(model)
            if self._recurrent:
                self._cache, self._cached_ids = cache, ids[0][:end]
        elif self._recurrent:
            self._cache = cache  # kept as is: the turn continues from a copy
            set_rope_deltas(model, self._rope_deltas)
        else:
            crop_cache(cache, reuse)
            set_rope_deltas(model, self._rope_deltas)
        prompt = {
            "input_ids": ids.to(critic.device),
            "attention_mask": inputs["attention_mask"].to(critic.device),
            generate_cache_argument(generator): cache,
        }
        if self._recurrent:
            import copy

            prompt[generate_cache_argument(generator)] = copy.deepcopy(self._cache)
            return critic.decode_text(generator, prompt, **options)
        text = critic.decode_text(generator, prompt, **options)
        self._cache, self._cached_ids = cache, ids[0]
        return text

    def _reusable(self, cache, ids: torch.Tensor) -> int | None:
        """How many of the cached tokens the prompt ``ids`` keeps (at least its last token is left to run), or None
        where the cache cannot serve it."""
        from vcritic.model.compat import can_crop

        if cache is None or self._image_end is None:
            return None
        old = self._cached_ids
        if self._recurrent:  # the image prefix, used whole (from a copy) or not at all: never cropped
            return len(old) if len(ids) > len(old) and bool((ids[: len(old)] == old).all()) else None
        if not can_crop(cache):
            return None
        size = min(len(ids), len(old))
        differ = (ids[:size] != old[:size]).nonzero()
        common = int(differ[0]) if len(differ) else size
        return min(common, len(ids) - 1) if common >= self._image_end else None


def _image_end(critic: Critic, ids: torch.Tensor) -> int | None:
    """The position after a prompt's last image token, or None where the image tokens cannot be found in it (then
    every turn encodes the image again)."""
    processor = critic.processor
    token = getattr(processor, "image_token_id", None)
    if token is None and getattr(processor, "image_token", None) is not None:
        token = critic.tokenizer.convert_tokens_to_ids(str(processor.image_token))
    found = (ids == token).nonzero() if token is not None else []
    return int(found[-1]) + 1 if len(found) else None

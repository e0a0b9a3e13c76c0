"""Many questions about one image for the price of one image encoding: a shared-prefix KV cache.

Every quality prompt starts the same way (template header, then the image tokens) and differs only after the image
(task identifier, instruction, answer prefix). So the prefix runs through the whole model once, with the vision
tower, and its key/value cache is repeated for each question; the language model then reads only the short
per-question suffixes, as one batch, and each row's next-token distribution is taken at its own last token.

- Suffixes are padded on the right: under causal attention padding *after* a token cannot change it, so the
  numbers equal those of the full prompt alone (to float rounding) and do not depend on the other questions.
- Positions continue from the prefix. Qwen2-VL/2.5-VL use 3-D multimodal rotary positions: text after the image
  sits at ``index + rope_delta``, which the prefix pass computed, so the suffix gets explicit position ids.
- InstructBLIP's Q-Former reads the instruction, so its image tokens differ per question and there is no common
  prefix to cache: its questions run as one batch of full prompts (one forward, the vision tower once per question).
- The prompt is split as text, just after the image placeholder (a special token, where tokenisation restarts).
  The first image checks that prefix + suffix tokens equal the full prompt's tokens; a tokenizer for which they do
  not (e.g. SentencePiece adding a leading space to the suffix) gets full prompts per question, still in one batch.
- ``describe`` adds its DESCRIBE prompt to the questions: after the read-outs, ``generate`` gets the whole
  DESCRIBE prompt and a copy of the prefix cache, runs only the uncached suffix and decodes on. Models whose own
  ``generate`` cannot continue from a cache (InstructBLIP) generate from the full prompt, a second pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from vcritic.critic import Critic, Encoder
    from vcritic.prompts import Question

# Families whose image tokens depend on the question (Q-Former conditioned on the instruction).
QUESTION_DEPENDENT_IMAGE = frozenset({"instructblip", "instructblipvideo"})


class PromptSplit:
    """The text shared by a set of prompts (up to the image) and each prompt's token suffix; checked once."""

    def __init__(self, encoder: Encoder, questions: Sequence[Question]):
        prompts = [encoder.prompt(q) for q in questions]
        placeholder = encoder.family.image_placeholder
        common = _common_prefix(prompts)
        cut = common.rfind(placeholder) + len(placeholder) if placeholder and placeholder in common else 0
        self.shared_text = common[:cut]
        tokenizer = getattr(encoder.processor, "tokenizer", encoder.processor)
        self.suffix_ids = [tokenizer(p[cut:], add_special_tokens=False)["input_ids"] for p in prompts]
        # Unknown until the first image has been checked; no shared prefix where the image is not in it (a template
        # that puts the question first).
        self.exact: bool | None = False if placeholder and cut == 0 else None

    def check(self, encoder: Encoder, questions: Sequence[Question], prefix: dict, image: Image.Image) -> bool:
        import torch

        head = prefix["input_ids"][0]
        for question, suffix in zip(questions, self.suffix_ids, strict=True):
            full = encoder.encode(question, [image])["input_ids"][0]
            if not torch.equal(full, torch.cat([head, torch.tensor(suffix, dtype=head.dtype)])):
                return False
        return True


def encode_questions(encoder: Encoder, questions: Sequence[Question], image: Image.Image) -> dict[str, Any]:
    """One image with several questions, unpadded: ``{"prefix", "suffix_ids"}`` or ``{"full": [...]}`` (also where
    the model cannot continue from a prefix cache, :func:`vcritic.compat.prefix_cache_supported`)."""
    from vcritic.resolution import fit_image

    image = fit_image(encoder.processor, image)  # once, not once per question
    if len(questions) == 1:
        return {"full": [encoder.encode(questions[0], [image])]}
    key = tuple(q.name for q in questions)
    split = encoder._splits.get(key)
    if split is None:
        split = encoder._splits[key] = PromptSplit(encoder, questions)
    if encoder.family.model_type not in QUESTION_DEPENDENT_IMAGE and encoder.shared_prefix and split.exact is not False:
        prefix = dict(encoder.processor(images=[image], text=[split.shared_text], return_tensors="pt"))
        if split.exact is None:
            split.exact = split.check(encoder, questions, prefix, image)
        if split.exact:
            return {"prefix": prefix, "suffix_ids": split.suffix_ids}
    return {"full": [encoder.encode(q, [image]) for q in questions]}


def collate_questions(encoder: Encoder, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch of :func:`encode_questions` items (same questions, same mode); rows are image-major."""
    import torch

    if "full" in items[0]:
        return {"full": encoder.pad_batch([enc for item in items for enc in item["full"]]), "n": len(items[0]["full"])}
    suffixes = [ids for item in items for ids in item["suffix_ids"]]
    width = max(len(ids) for ids in suffixes)
    suffix_ids = torch.full((len(suffixes), width), encoder.pad_token_id, dtype=torch.long)
    suffix_mask = torch.zeros((len(suffixes), width), dtype=torch.long)
    for row, ids in enumerate(suffixes):
        suffix_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        suffix_mask[row, : len(ids)] = 1
    return {
        "prefix": encoder.pad_batch([item["prefix"] for item in items]),
        "suffix_ids": suffix_ids,
        "suffix_mask": suffix_mask,
        "n": len(items[0]["suffix_ids"]),
    }


def answer_logits(critic: Critic, batch: dict[str, Any]) -> torch.Tensor:
    """Next-token logits at each question's answer position: ``[n_images, n_questions, vocab]``."""
    import torch

    n = batch["n"]
    if "full" in batch:
        logits = critic.last_logits(batch["full"])
        return logits.view(-1, n, logits.shape[-1])
    with torch.inference_mode():
        model, prefix, cache = encode_prefix(critic, batch["prefix"])
        logits = _read_suffixes(critic, model, prefix, cache, batch)
    return logits.view(-1, n, logits.shape[-1])


def generate_and_answer(
    critic: Critic, batch: dict[str, Any], prompt_suffix: Sequence[int], **generate_options
) -> tuple[str, torch.Tensor]:
    """One image, one prefix encoding: the free text that follows ``prefix + prompt_suffix`` (the DESCRIBE prompt),
    and the answer logits of the questions in ``batch`` (a one-image :func:`collate_questions` batch),
    ``[1, n_questions, vocab]``.

    The text is decoded by ``generate`` itself from a copy of the prefix's KV cache, given the whole prompt: it
    skips what the cache holds and runs only the DESCRIBE suffix, with the model's own generation settings, so it
    is the text that a plain ``generate`` over the full prompt writes (to float rounding of the logits).
    """
    import copy

    import torch

    from vcritic.compat import generate_cache_argument

    with torch.inference_mode():
        model, prefix, cache = encode_prefix(critic, batch["prefix"])
        prompt_cache = copy.deepcopy(cache)  # the read-outs below extend and repeat the cache in place
        logits = _read_suffixes(critic, model, prefix, cache, batch)
        suffix = torch.tensor([list(prompt_suffix)], dtype=prefix["input_ids"].dtype, device=critic.device)
        generator = cache_generator(critic)
        inputs = {
            "input_ids": torch.cat([prefix["input_ids"], suffix], dim=1),
            "attention_mask": torch.cat([prefix["attention_mask"], torch.ones_like(suffix)], dim=1),
            generate_cache_argument(generator): prompt_cache,
        }
        text = critic.decode_text(generator, inputs, **generate_options)
    return text, logits.view(-1, batch["n"], logits.shape[-1])


def encode_prefix(critic: Critic, prefix_batch: dict[str, Any]):
    """The shared prefix (vision tower included) through the whole model: its KV cache and inputs."""
    from vcritic.compat import find_cache

    model = critic._base_model()
    prefix = critic.to_device(prefix_batch)
    options = {"use_cache": True}
    if critic._accepts_logits_to_keep:
        options["logits_to_keep"] = 1
    out = model(**prefix, **options)
    return model, prefix, find_cache(out)


def _read_suffixes(critic: Critic, model, prefix: dict[str, Any], cache, batch: dict[str, Any]) -> torch.Tensor:
    """Each question's suffix read from the prefix cache (repeated in place per question): ``[rows, vocab]``."""
    import torch

    from vcritic.compat import cache_argument, repeat_cache, rope_deltas, text_decoder

    n = batch["n"]
    repeat_cache(cache, n)
    # non_blocking: a blocking copy to a GPU waits for the work already queued (the previous batch included).
    suffix_ids = batch["suffix_ids"].to(critic.device, non_blocking=True)
    suffix_mask = batch["suffix_mask"].to(critic.device, non_blocking=True)
    prefix_mask = prefix["attention_mask"]
    mask = torch.cat([prefix_mask.repeat_interleave(n, dim=0), suffix_mask], dim=1)
    decoder = text_decoder(model)
    inputs = {
        "inputs_embeds": model.get_input_embeddings()(suffix_ids),
        "attention_mask": mask,
        "use_cache": True,
        cache_argument(decoder): cache,
    }
    deltas = rope_deltas(model)
    if deltas is not None:
        # Text after the image sits at (index among real tokens) + rope_delta, on all three rotary axes.
        start = prefix_mask.sum(dim=1, keepdim=True) + deltas.to(prefix_mask.device)
        steps = torch.arange(suffix_ids.shape[1], device=critic.device)
        positions = (start + steps).repeat_interleave(n, dim=0)
        inputs["position_ids"] = positions.unsqueeze(0).expand(3, -1, -1)
    hidden = decoder(**inputs).last_hidden_state
    last = suffix_mask.sum(dim=1) - 1
    hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return model.get_output_embeddings()(hidden)


def _common_prefix(texts: Sequence[str]) -> str:
    first, last = min(texts), max(texts)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]


def cache_generator(critic: Critic):
    """The model whose ``generate`` continues from a prefilled cache, or None where vcritic knows none.

    transformers' own ``generate`` does: given the whole prompt and a cache, it runs only the uncached tokens.
    Models that override it (BLIP-2, InstructBLIP, ...) run their vision tower on every call; BLIP-2's language
    model, given token ids and the cache, runs only the text after the image query tokens (all in the cache).
    """
    from vcritic.compat import generates_from_cache

    if not critic.encoder.shared_prefix:
        return None
    model = critic._base_model()
    if critic.family.model_type == "blip-2":
        model = model.language_model
    return model if generates_from_cache(model) else None

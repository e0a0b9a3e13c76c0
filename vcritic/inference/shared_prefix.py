"""Many questions about one image for the price of one image encoding: a shared-prefix KV cache.

Every quality prompt starts the same way (template header, then the image tokens) and differs only after the image
(task identifier, instruction, answer prefix). So the prefix runs through the whole model once, with the vision
tower, and the language model then reads each question's short suffix from its key/value cache, the answer's
next-token distribution taken at the suffix's last token.

- A question's numbers do not depend on which other questions are asked (issue 17: in bfloat16 on a GPU, other
  shapes mean other kernels and other rounding, and ``--tasks all`` moved MOS by up to 1.82). So every question,
  asked alone or with others, meets the same shapes: one question takes the same prefix + suffix path as many, the
  prefix ends just after the image placeholder whatever the questions, and each question's suffix is its own
  forward over the batch's images, ``[images, len(suffix)]``, never padded to another question's suffix. Between
  questions the prefix cache is cropped back to the prefix, or, where that cannot restore it exactly (the recurrent
  state of hybrid models such as Qwen3.5, sliding windows), each question reads from a copy of it.
- Positions continue from the prefix. Qwen2-VL/2.5-VL use 3-D multimodal rotary positions: text after the image
  sits at ``index + rope_delta``, which the prefix pass computed, so the suffix gets explicit position ids.
- InstructBLIP's Q-Former reads the instruction, so its image tokens differ per question and there is no common
  prefix to cache: each question's full prompts run as a batch of their own, one forward per question.
- The prompt is split as text, just after the image placeholder (a special token, where tokenisation restarts).
  The first image checks that prefix + suffix tokens equal the full prompt's tokens; a tokenizer for which they do
  not (e.g. SentencePiece adding a leading space to the suffix) gets full prompts per question, a batch each.
- ``describe`` adds its DESCRIBE prompt to the questions: after the read-outs, ``generate`` gets the whole
  DESCRIBE prompt and the prefix cache (restored after the read-outs), runs only the uncached suffix and decodes
  on. Models whose own ``generate`` cannot continue from a cache (InstructBLIP) generate from the full prompt, a
  second pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from vcritic.inference.encoder import Encoder
    from vcritic.inference.runner import Runner
    from vcritic.readout.prompts import Question

# Families whose image tokens depend on the question (Q-Former conditioned on the instruction).
QUESTION_DEPENDENT_IMAGE = frozenset({"instructblip", "instructblipvideo"})


class PromptSplit:
    """The text shared by a set of prompts (up to the image) and each prompt's token suffix; checked once.

    The split point is the same for every set of questions, one question included: the end of the image
    placeholder in the text that these prompts share with two reference prompts (MOS and authenticity), so that
    a lone question's prefix never takes in text that another question would not share. A template that puts the
    question before the image then has no shared prefix for any set."""

    def __init__(self, encoder: Encoder, questions: Sequence[Question]):
        from vcritic.readout.prompts import AUTHENTICITY_QUESTION, QUALITY

        prompts = [encoder.prompt(q) for q in questions]
        placeholder = encoder.family.image_placeholder
        common = _common_prefix([*prompts, encoder.prompt(QUALITY), encoder.prompt(AUTHENTICITY_QUESTION)])
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
    """One image with one or more questions, unpadded: ``{"prefix", "suffix_ids"}`` or ``{"full": [...]}`` (also
    where the model cannot continue from a prefix cache, :func:`vcritic.model.compat.prefix_cache_supported`)."""
    from vcritic.model.resolution import fit_image

    image = fit_image(encoder.processor, image)  # once, not once per question
    key = tuple(q.name for q in questions)
    split = encoder.prompt_splits.get(key)
    if split is None:
        split = encoder.prompt_splits[key] = PromptSplit(encoder, questions)
    if encoder.family.model_type not in QUESTION_DEPENDENT_IMAGE and encoder.shared_prefix and split.exact is not False:
        prefix = dict(encoder.processor(images=[image], text=[split.shared_text], return_tensors="pt"))
        if split.exact is None:
            split.exact = split.check(encoder, questions, prefix, image)
        if split.exact:
            return {"prefix": prefix, "suffix_ids": split.suffix_ids}
    return {"full": [encoder.encode(q, [image]) for q in questions]}


def collate_questions(encoder: Encoder, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch of :func:`encode_questions` items (same questions, same mode). Full prompts: one left-padded batch per
    question (``"full"``, a list). Prefixes: one left-padded batch; the suffixes, the same for every image, as one
    ``[questions, longest]`` tensor (one copy to the device) with each question's length in ``"suffix_lengths"``:
    a question reads only its own tokens, never the padding."""
    import torch

    n = len(items[0]["full"] if "full" in items[0] else items[0]["suffix_ids"])
    if "full" in items[0]:
        return {"full": [encoder.pad_batch([item["full"][j] for item in items]) for j in range(n)], "n": n}
    suffixes = items[0]["suffix_ids"]
    suffix_ids = torch.full((n, max(len(ids) for ids in suffixes)), encoder.pad_token_id, dtype=torch.long)
    for row, ids in enumerate(suffixes):
        suffix_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return {
        "prefix": encoder.pad_batch([item["prefix"] for item in items]),
        "suffix_ids": suffix_ids,
        "suffix_lengths": [len(ids) for ids in suffixes],
        "n": n,
    }


def answer_logits(runner: Runner, batch: dict[str, Any]) -> torch.Tensor:
    """Next-token logits at each question's answer position: ``[n_images, n_questions, vocab]``."""
    import torch

    if "full" in batch:  # one forward per question, over that question's prompts only
        return torch.stack([runner.padded_last_logits(prompts) for prompts in batch["full"]], dim=1)
    with torch.inference_mode():
        model, prefix, cache = encode_prefix(runner, batch["prefix"])
        return _read_suffixes(runner, model, prefix, cache, batch, restore=False)


def generate_and_answer(
    runner: Runner, batch: dict[str, Any], prompt_suffix: Sequence[int], **generate_options
) -> tuple[str, torch.Tensor]:
    """One image, one prefix encoding: the free text that follows ``prefix + prompt_suffix`` (the DESCRIBE prompt),
    and the answer logits of the questions in ``batch`` (a one-image :func:`collate_questions` batch),
    ``[1, n_questions, vocab]``.

    The text is decoded by ``generate`` itself from the prefix's KV cache (as it was before the read-outs), given
    the whole prompt: it skips what the cache holds and runs only the DESCRIBE suffix, with the model's own
    generation settings, so it is the text that a plain ``generate`` over the full prompt writes (to float rounding
    of the logits).
    """
    import torch

    from vcritic.model.compat import generate_cache_argument

    with torch.inference_mode():
        model, prefix, cache = encode_prefix(runner, batch["prefix"])
        logits = _read_suffixes(runner, model, prefix, cache, batch, restore=True)
        suffix = torch.tensor([list(prompt_suffix)], dtype=prefix["input_ids"].dtype, device=runner.device)
        generator = cache_generator(runner)
        inputs = {
            "input_ids": torch.cat([prefix["input_ids"], suffix], dim=1),
            "attention_mask": torch.cat([prefix["attention_mask"], torch.ones_like(suffix)], dim=1),
            generate_cache_argument(generator): cache,
        }
        text = runner.decode_text(generator, inputs, **generate_options)
    return text, logits


def encode_prefix(runner: Runner, prefix_batch: dict[str, Any]):
    """The shared prefix (vision tower included) through the whole model: its KV cache and inputs."""
    from vcritic.model.compat import find_cache

    model = runner.base_model()
    prefix = runner.to_device(prefix_batch)
    options = {"use_cache": True}
    if runner.accepts_logits_to_keep:
        options["logits_to_keep"] = 1
    out = model(**prefix, **options)
    return model, prefix, find_cache(out)


def _read_suffixes(
    runner: Runner, model, prefix: dict[str, Any], cache, batch: dict[str, Any], *, restore: bool
) -> torch.Tensor:
    """Each question's suffix read from the prefix cache, one forward per question over all the batch's images:
    ``[images, questions, vocab]``. Reading extends the cache in place, so it is cropped back to the prefix after
    each question, or, where cropping cannot restore it exactly (:func:`vcritic.model.compat.crop_restores`), each
    question reads from a copy (the last one from the cache itself unless ``restore``). ``restore``: leave the
    cache holding the prefix, as it came."""
    import copy

    import torch

    from vcritic.model.compat import cache_argument, cache_length, crop_cache, crop_restores, rope_deltas, text_decoder

    # non_blocking: a blocking copy to a GPU waits for the work already queued (the previous batch included).
    suffix_ids = batch["suffix_ids"].to(runner.device, non_blocking=True)
    prefix_mask = prefix["attention_mask"]
    images = prefix_mask.shape[0]
    decoder = text_decoder(model)
    argument = cache_argument(decoder)
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    deltas = rope_deltas(model)
    # Text after the image sits at (index among real tokens) + rope_delta, on all three rotary axes.
    start = prefix_mask.sum(dim=1, keepdim=True) + deltas.to(prefix_mask.device) if deltas is not None else None
    cropping = crop_restores(model, cache)
    keep = cache_length(cache) if cropping else None
    logits = []
    last = len(batch["suffix_lengths"]) - 1
    for j, length in enumerate(batch["suffix_lengths"]):
        ids = suffix_ids[j, :length].expand(images, length)
        inputs = {
            "inputs_embeds": embeddings(ids),
            "attention_mask": torch.cat([prefix_mask, prefix_mask.new_ones((images, length))], dim=1),
            "use_cache": True,
            argument: cache if cropping or (j == last and not restore) else copy.deepcopy(cache),
        }
        if start is not None:
            positions = start + torch.arange(length, device=start.device)
            inputs["position_ids"] = positions.unsqueeze(0).expand(3, -1, -1)
        hidden = decoder(**inputs).last_hidden_state
        logits.append(head(hidden[:, -1]))
        del inputs, hidden  # this question's copy of the cache goes before the next one is made
        if cropping:
            crop_cache(cache, keep)
    return torch.stack(logits, dim=1)


def _common_prefix(texts: Sequence[str]) -> str:
    first, last = min(texts), max(texts)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]


def cache_generator(runner: Runner):
    """The model whose ``generate`` continues from a prefilled cache, or None where vcritic knows none.

    transformers' own ``generate`` does: given the whole prompt and a cache, it runs only the uncached tokens.
    Models that override it (BLIP-2, InstructBLIP, ...) run their vision tower on every call; BLIP-2's language
    model, given token ids and the cache, runs only the text after the image query tokens (all in the cache).
    """
    from vcritic.model.compat import generates_from_cache

    if not runner.encoder.shared_prefix:
        return None
    model = runner.base_model()
    if runner.family.model_type == "blip-2":
        model = model.language_model
    return model if generates_from_cache(model) else None

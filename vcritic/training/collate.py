"""Training examples: a dialogue becomes the exact token sequence scoring sees, followed by its answer.

The prompt goes through :meth:`vcritic.inference.critic.Encoder.encode` (same chat template, image tokens, side-by-side
pairs,
Q-Former text as scoring), which ends with the question's answer prefix; the rest of the answer and EOS are appended.
Labels are -100 everywhere except on those appended tokens, so the model is taught the answer word at exactly the
position the readout reads it. Batches are left-padded by :meth:`Encoder.collate`, labels with -100.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vcritic.data.dialogues import Dialogue
from vcritic.errors import VcriticError
from vcritic.readout.prompts import COMPARE, get_question

if TYPE_CHECKING:
    from PIL import Image

    from vcritic.inference.encoder import Encoder
    from vcritic.readout.prompts import Question

IGNORE = -100
MAX_TEXT_TOKENS = 8192  # an instruction or an answer, in the model's tokens


def answer_tokens(tokenizer, prefix: str, answer: str) -> list[int]:
    """Tokens of ``answer`` after ``prefix``, tokenised in context, plus EOS.

    Tokenising prefix + answer and dropping the common start (as :func:`vcritic.readout.next_token.answer_token_ids`
    does) gives
    the ids the model sees there, so the first label is exactly the readout's answer-word id.
    """
    before = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    full = tokenizer(answer, add_special_tokens=False)["input_ids"]
    common = 0
    while common < min(len(before), len(full)) and before[common] == full[common]:
        common += 1
    ids = list(full[common:])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids


def training_question(encoder: Encoder, dialogue: Dialogue) -> tuple[Question, str | None]:
    """The Question and instruction the model is taught with: the dialogue's own, except that families which see a
    pair as one side-by-side picture get the side-by-side question scoring asks them (its single instruction)."""
    question = get_question(dialogue.question)
    if question.n_images == 2 and not encoder.family.multi_image:
        return encoder.pair_question, None
    return question, dialogue.instruction


def encode_dialogue(encoder: Encoder, dialogue: Dialogue, images: Sequence[Image.Image]) -> dict[str, Any]:
    """One training sequence (a batch of one, unpadded) with ``labels`` on the answer tokens only."""
    import torch

    from vcritic.base.images import side_by_side

    question, instruction = training_question(encoder, dialogue)
    if not dialogue.answer.startswith(question.answer_prefix):
        raise VcriticError(
            f"a {dialogue.question!r} answer must start with {question.answer_prefix!r}: {dialogue.answer[:60]!r}",
            hint="rebuild the data with: vcritic data build",
        )
    if dialogue.question == COMPARE.name and question.n_images == 1:
        images = [side_by_side(images[0], images[1])]
    tokenizer = getattr(encoder.processor, "tokenizer", encoder.processor)
    answer = answer_tokens(tokenizer, question.answer_prefix, dialogue.answer)
    if not answer:
        raise VcriticError(f"empty answer in a {dialogue.question!r} dialogue", hint="rebuild the data")
    # Characters are bounded when the file is read; tokens here, before the model sees them (a tokenizer can make
    # several tokens of one character).
    said = len(tokenizer(instruction, add_special_tokens=False)["input_ids"]) if instruction else 0
    if max(said, len(answer)) > MAX_TEXT_TOKENS:
        which = "instruction" if said > MAX_TEXT_TOKENS else "answer"
        raise VcriticError(
            f"a {dialogue.question!r} dialogue's {which} is {max(said, len(answer)):,} tokens, over the "
            f"{MAX_TEXT_TOKENS:,} allowed (images {', '.join(dialogue.images)})",
            hint="shorten or drop that dialogue",
        )
    item = encoder.encode(question, images, instruction)
    n = len(answer)
    answer_ids = torch.tensor([answer], dtype=item["input_ids"].dtype)
    item["input_ids"] = torch.cat([item["input_ids"], answer_ids], dim=1)
    for key in ("attention_mask", "token_type_ids", "mm_token_type_ids"):
        if key in item:
            fill = 1 if key == "attention_mask" else 0
            item[key] = torch.cat([item[key], torch.full((1, n), fill, dtype=item[key].dtype)], dim=1)
    labels = torch.full_like(item["input_ids"], IGNORE)
    labels[0, -n:] = answer_ids[0]
    item["labels"] = labels
    return item


class DialogueDataset:
    """Dialogues of one JSONL file, encoded on access (in DataLoader workers when there are any)."""

    def __init__(self, dialogues: Sequence[Dialogue], root: Path, encoder: Encoder):
        self.dialogues = list(dialogues)
        self.root = root
        self.encoder = encoder

    def __len__(self) -> int:
        return len(self.dialogues)

    def image_path(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.root / path

    def __getitem__(self, index: int) -> dict[str, Any]:
        from vcritic.base.images import load_image

        dialogue = self.dialogues[index]
        images = []
        for name in dialogue.images:
            try:
                images.append(load_image(self.image_path(name)))
            except VcriticError as err:  # the reason alone ("file not found") does not say which file
                raise VcriticError(
                    f"{self.image_path(name)}: {err.message}",
                    hint="restore or remove it (vcritic data build/synth skip unreadable images); "
                    "--resume continues from the last checkpoint",
                ) from None
        return encode_dialogue(self.encoder, dialogue, images)


class TrainingCollate:
    """Picklable collate function: left-pads with the encoder's own padding."""

    def __init__(self, encoder: Encoder):
        self.encoder = encoder

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return self.encoder.collate(items)

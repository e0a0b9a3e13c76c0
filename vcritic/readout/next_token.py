"""Reading scores off the model's next-token distribution, without generating or parsing text.

At the answer position the model would write one of a question's answer words. Softmax over just those words'
logits gives a distribution over the levels; its expectation is the score and its standard deviation the model's
uncertainty, both on the values' own scale (0-100 for MOS). One forward pass, no ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vcritic.errors import VcriticError

if TYPE_CHECKING:
    import torch

    from vcritic.readout.prompts import Question


def answer_token_ids(tokenizer, question: Question, model: str = "this model") -> list[int]:
    """The token id each answer word starts with, when it follows the answer prefix.

    Only the first token of each word is read, so the words must start with different tokens; ``model`` names the
    checkpoint in the error when they do not.

    Tokenising the prefix with and without the word (instead of the word alone) gets the id the model really sees
    there: SentencePiece and byte-level BPE both fold the leading space into the word's first token.
    """
    prefix = tokenizer(question.answer_prefix, add_special_tokens=False)["input_ids"]
    ids = []
    for word in question.words:
        full = tokenizer(question.answer_prefix + word, add_special_tokens=False)["input_ids"]
        # Some tokenizers re-merge the last prefix token with the word; compare from the common part on.
        common = 0
        while common < min(len(prefix), len(full)) and prefix[common] == full[common]:
            common += 1
        if common >= len(full):
            raise VcriticError(
                f"the tokenizer of {model} cannot read out the answer word {word.strip()!r} for {question.name!r}",
                hint="this checkpoint's tokenizer is not supported for this task; report it with the model name",
            )
        ids.append(full[common])
    for i, first in enumerate(ids):
        if first in ids[:i]:
            other = question.words[ids.index(first)].strip()
            raise VcriticError(
                f"the tokenizer of {model} splits the answer words {other!r} and {question.words[i].strip()!r} "
                f"for {question.name!r} into tokens that start the same, so they cannot be told apart",
                hint="this checkpoint's tokenizer is not supported for this task; report it with the model name",
            )
    return ids


@dataclass(frozen=True)
class Readout:
    """Per-item results of one question: expectation, spread and the distribution over the answer words."""

    mean: torch.Tensor  # [B], float32
    std: torch.Tensor  # [B]
    probs: torch.Tensor  # [B, n_choices]


def expectation(
    logits: torch.Tensor, token_ids: Sequence[int] | torch.Tensor, values: Sequence[float] | torch.Tensor
) -> Readout:
    """``logits``: [B, vocab] at the answer position. Computed in float32 whatever the model dtype.

    ``token_ids`` and ``values`` may be given as tensors on the logits' device (:meth:`Critic.answer_tensors`): built
    from Python lists, they would be copied to a GPU with a host sync that stalls the next batch's launch."""
    import torch

    ids = torch.as_tensor(token_ids, dtype=torch.long, device=logits.device)
    choice_logits = logits.index_select(1, ids).float()
    probs = torch.softmax(choice_logits, dim=-1)
    vals = torch.as_tensor(values, dtype=torch.float32, device=probs.device)
    # Sums over the choices one column at a time, in a fixed order: a matrix-vector product takes another
    # reduction path for another number of rows, which alone moved a CPU score by 4e-6 between batch sizes.
    mean = sum(probs[:, k] * vals[k] for k in range(len(vals)))
    square = sum(probs[:, k] * vals[k] ** 2 for k in range(len(vals)))
    var = square - mean**2
    return Readout(mean=mean, std=var.clamp_min(0).sqrt(), probs=probs)

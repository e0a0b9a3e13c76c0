"""A batching strategy: how encoded items become a batch, and how a batch runs through the model.

A critic has one, chosen when it is made (``load_critic``'s ``fixed_shapes``, the CLI's ``--reproducible``) and kept
on its encoder, because DataLoader workers collate with a copy of the encoder:

- :data:`PADDED`, the default: a batch is left-padded into one forward, so its compute shapes follow the batch;
- :class:`vcritic.inference.shapes.FixedShapes`: items grouped by shape, every forward the same number of rows, so a
  score does not depend on the batch size or the neighbours.

Nothing else asks which strategy a critic has: the encoder's ``collate`` and the runner's forwards go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from vcritic.inference.shared_prefix import collate_questions

if TYPE_CHECKING:
    import torch

    from vcritic.inference.encoder import Encoder
    from vcritic.inference.runner import Runner


class Batching(Protocol):
    """What a batching strategy does; :class:`Padded` and :class:`vcritic.inference.shapes.FixedShapes` are the two."""

    fixed: bool  # whether compute shapes are fixed (--reproducible)

    def collate(self, encoder: Encoder, items: Sequence[dict[str, Any]]) -> Any:
        """Encoded prompts (:meth:`Encoder.encode`) as one batch for :meth:`run`."""

    def collate_questions(self, encoder: Encoder, items: Sequence[dict[str, Any]]) -> Any:
        """:meth:`Encoder.encode_questions` items as one batch for :meth:`run`."""

    def run(self, runner: Runner, batch: Any, forward: Callable[[dict[str, Any]], torch.Tensor]) -> torch.Tensor:
        """``forward`` (over a padded batch: one entry per item in its first dimension) over a collated ``batch``."""


class Padded:
    """The default strategy: a batch is left-padded into one forward, so its compute shapes follow the batch."""

    fixed = False

    def collate(self, encoder: Encoder, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return encoder.pad_batch(items)

    def collate_questions(self, encoder: Encoder, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Padded (:func:`vcritic.inference.shared_prefix.collate_questions`); a reasoning judge's generated
        questions as one left-padded batch of full prompts under ``"generate"``, beside the read ones."""
        if items and "generate" in items[0]:
            read = [item["read"] for item in items]
            return {
                "read": collate_questions(encoder, read) if read[0] else None,
                "generate": encoder.pad_batch([encoding for item in items for encoding in item["generate"]]),
                "n_generate": len(items[0]["generate"]),
            }
        return collate_questions(encoder, items)

    def run(self, runner: Runner, batch: dict[str, Any], forward: Callable[[dict[str, Any]], torch.Tensor]):
        return forward(batch)


PADDED = Padded()  # it holds no state: one for every encoder

"""Fixed compute shapes (``--reproducible``): a score that does not depend on the batch size or the neighbours.

On a GPU, cuBLAS and SDPA pick other kernels, tilings and reduction orders for other matrix shapes, so the same
image read in a batch of 1, 8 or 32 gets different bf16 rounding: up to 3.4 MOS points on an H100 (issue 9).
The same shapes with other neighbours gave exactly the same scores. So in this mode the shapes an image meets
never depend on ``--batch-size`` or on its neighbours:

- The items of a batch (images for ``score``, prompts for ``compare``) are grouped by input shape (token count,
  and for Qwen-VL the image grid), so no row is ever left-padded because of a neighbour.
- Every forward reads exactly ``rows`` items (:data:`ROWS`); a partial group is filled with copies of its first
  item, whose outputs are dropped. An image with several questions runs the shared-prefix forward with ``rows``
  rows and then each question's suffix with ``rows`` rows; without a shared prefix, each question's ``rows`` full
  prompts.
- Groups are formed within each batch the loader hands over, so rows still stream out in input order, and
  ``--batch-size`` only sets how many images are decoded and grouped per step (the larger, the fewer copies).
- A forward that runs out of GPU memory halves ``rows`` for the rest of the run (never below 1: the batch engine's
  rule, :func:`vcritic.engine.batches.retry_smaller`); scores then reproduce at the new ``rows``, and
  :meth:`FixedShapes.describe` says so for the command's summary.

Rows are independent in these models (no batch statistics), so a copy changes nothing but the shape.
:class:`FixedShapes` is a batching strategy (:mod:`vcritic.inference.batching`): a critic in this mode collates and
runs every batch through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from vcritic.errors import VcriticError

if TYPE_CHECKING:
    import torch

    from vcritic.inference.encoder import Encoder
    from vcritic.inference.runner import Runner

# Items per forward. 8: on the H100 measurement of issue 9 (7B, 448 px) batch 8 already ran at the speed of batch
# 32 end to end (18.9 vs 19.0 img/s), so larger shapes buy little, while every partial group costs up to ROWS - 1
# copies (a lone image is 8x the work). It is also the default --batch-size, which then runs unsplit.
ROWS = 8
# Integer inputs whose values, not only their shape, set compute shapes: Qwen-VL's (t, h, w) patch grid decides
# the vision tower's windows and attention segments.
_GRID_KEYS = ("image_grid_thw", "video_grid_thw")


@dataclass
class FixedShapes:
    """The fixed-shapes batching strategy (:class:`vcritic.inference.batching.Batching`): items per forward, and the
    size it started at once it had to halve."""

    rows: int = ROWS
    halved_from: int | None = None
    fixed = True  # a class attribute, not a field

    def __post_init__(self):
        if isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 1:
            raise VcriticError(
                f"fixed_shapes={self.rows!r} is not a number of rows", hint="use True (8 rows) or a positive integer"
            )

    @classmethod
    def of(cls, value: bool | int | FixedShapes | None) -> FixedShapes | None:
        """``load_critic``'s ``fixed_shapes``: False/None off, True :data:`ROWS`, a number that many rows."""
        if value is None or value is False:
            return None
        if isinstance(value, FixedShapes):
            return value
        return cls() if value is True else cls(value)

    def halve(self) -> bool:
        """After running out of memory at ``rows`` (:func:`vcritic.engine.batches.half_of`); False when already at
        one."""
        from vcritic.engine.batches import half_of

        smaller = half_of(self.rows)
        if smaller is None:
            return False
        self.halved_from = self.halved_from or self.rows
        self.rows = smaller
        return True

    def describe(self) -> str:
        """For a summary: "fixed shapes of 8 rows", or how it halved."""
        text = f"fixed shapes of {self.rows} rows"
        if self.halved_from:
            from vcritic.engine.batches import halved_note

            text += (f" ({halved_note(self.halved_from)}: scores reproduce at {self.rows} rows, rows before the "
                     f"halving were read at {self.halved_from})")  # fmt: skip
        return text

    def collate(self, encoder: Encoder, items: Sequence[dict[str, Any]]) -> ShapeGroups:
        return group(items, questions=False)

    def collate_questions(self, encoder: Encoder, items: Sequence[dict[str, Any]]) -> ShapeGroups:
        if items and "generate" in items[0]:
            raise VcriticError(
                "a reasoning judge's generated answers cannot be read in fixed shapes",
                hint="leave out --reproducible, or use a judge with a level-word read-out",
            )
        return group(items, questions=True)

    def run(
        self, runner: Runner, batch: ShapeGroups, forward: Callable[[dict[str, Any]], torch.Tensor]
    ) -> torch.Tensor:
        """``forward`` over ``batch`` in chunks of exactly :attr:`rows` items of one shape; its outputs (first
        dimension: one entry per item) put back in input order, the copies' dropped."""
        import torch

        from vcritic.engine.batches import retry_smaller
        from vcritic.inference.shared_prefix import collate_questions

        collate = partial(collate_questions, runner.encoder) if batch.questions else runner.encoder.pad_batch
        out = None
        with torch.inference_mode():
            for positions, items in batch.groups:
                start = 0
                while start < len(items):
                    rows = self.rows
                    chunk = items[start : start + rows]
                    try:
                        result = forward(collate([*chunk, *[chunk[0]] * (rows - len(chunk))]))
                    except Exception as err:
                        if not retry_smaller(err, self, runner.device):
                            raise  # not out of memory, or R = 1 does not fit: the batch engine decides (error row)
                        continue
                    if out is None:
                        out = result.new_empty((batch.size, *result.shape[1:]))
                    where = torch.tensor(positions[start : start + len(chunk)], device=result.device)
                    out[where] = result[: len(chunk)]
                    start += len(chunk)
        return out


@dataclass
class ShapeGroups:
    """The encoded items of one batch, grouped by shape and not yet collated: what :class:`FixedShapes` collates,
    and what its :meth:`FixedShapes.run` reads in place of a padded batch."""

    size: int  # items, in input order
    questions: bool  # items are Encoder.encode_questions results
    groups: list[tuple[list[int], list[Any]]] = field(default_factory=list)  # (positions, items) per shape

    def pin_memory(self) -> ShapeGroups:
        # The DataLoader's pinning thread calls this; chunks are collated (copied) later, in the main process.
        return self


def group(items: Sequence[Any], *, questions: bool) -> ShapeGroups:
    """``items`` grouped by :func:`shape_key`, each group in input order."""
    found: dict[tuple, tuple[list[int], list[Any]]] = {}
    for position, item in enumerate(items):
        positions, members = found.setdefault(shape_key(item), ([], []))
        positions.append(position)
        members.append(item)
    return ShapeGroups(len(items), questions, list(found.values()))


def shape_key(item: Any) -> tuple:
    """What decides an item's compute shapes: every tensor's shape, and the Qwen-VL patch grid's values.
    An ``encode_questions`` item counts its prefix (the suffixes are the same for every image) or full prompts."""
    import torch

    if isinstance(item, dict) and "prefix" in item:
        return ("prefix", shape_key(item["prefix"]))
    if isinstance(item, dict) and "full" in item:
        return ("full", *(shape_key(encoding) for encoding in item["full"]))
    key = []
    for name, value in sorted(item.items()):
        if isinstance(value, torch.Tensor):
            key.append((name, tuple(value.shape)))
            if name in _GRID_KEYS:
                key.append((name, tuple(map(tuple, value.tolist()))))
    return tuple(key)

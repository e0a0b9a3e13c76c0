"""Batch size that fits: ``--batch-size auto`` and halving on CUDA out-of-memory.

- ``auto`` on CUDA: one image is run alone first and the peak memory it adds is measured; the batch size is then
  ``min(AUTO_MAX, floor(AUTO_FRACTION x free GPU memory / that peak))``, free memory counting what torch's cache holds
  unused. On CPU (and MPS) it is :data:`CPU_DEFAULT`: there is no memory figure worth trusting and larger batches
  gain little there.
- A batch that raises ``torch.cuda.OutOfMemoryError`` is retried at half the size, and every later batch runs at
  that size; the rows already written stay. An image that does not fit even alone gets an error row and the run goes
  on. :class:`BatchPlan` carries the size in use, so a command's summary can report where it ended.
- The Python API (:func:`in_batches`) follows the same rules, except that an item too large even alone raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from vcritic.errors import VcriticError

T = TypeVar("T")

AUTO = "auto"
CPU_DEFAULT = 8
AUTO_MAX = 128
AUTO_FRACTION = 0.8  # of free memory: activations are not exactly linear in the batch, and the allocator fragments
TOO_LARGE = "out of GPU memory even alone: lower --max-pixels or --image-size, or use a larger GPU"


def parse_batch_size(value: str | int) -> int | str:
    """``--batch-size``: a positive integer or ``auto``."""
    if isinstance(value, int) or str(value).strip().isdigit():
        number = int(value)
        if number >= 1:
            return number
    elif str(value).strip().lower() == AUTO:
        return AUTO
    raise VcriticError(f"--batch-size {value!r} is not a positive number or 'auto'", hint="e.g. --batch-size 16")


@dataclass
class BatchPlan:
    """The batch size asked for and the one in use (``None`` until ``auto`` has been measured)."""

    requested: int | str = CPU_DEFAULT
    current: int | None = None
    halvings: int = 0
    before_halving: int | None = None  # the size the run started at, once it had to halve

    def __post_init__(self):
        self.requested = parse_batch_size(self.requested)
        if self.current is None and self.requested != AUTO:
            self.current = int(self.requested)

    @classmethod
    def of(cls, batch_size: int | str | BatchPlan) -> BatchPlan:
        return batch_size if isinstance(batch_size, BatchPlan) else cls(batch_size)

    def halve(self) -> bool:
        """Halve after an out-of-memory error; False when already at one."""
        if not self.current or self.current <= 1:
            return False
        if self.before_halving is None:
            self.before_halving = self.current
        self.current = max(1, self.current // 2)
        self.halvings += 1
        return True

    def describe(self) -> str:
        """For a summary: "batch size 8", "batch size 16 (auto)", "batch size 4 (halved from 16 after OOM)"."""
        if self.current is None:
            return f"batch size {self.requested}"
        text = f"batch size {self.current}"
        if self.halvings:
            return f"{text} (halved from {self.before_halving} after running out of GPU memory)"
        return f"{text} (auto)" if self.requested == AUTO else text


def is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError)


def release_cached_memory(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def auto_batch_size(device, run_one) -> int:
    """The ``auto`` rule (module docstring). ``run_one()`` runs the model on one image; called only on CUDA."""
    if device.type != "cuda":
        return CPU_DEFAULT
    import torch

    release_cached_memory(device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    try:
        run_one()
    except torch.cuda.OutOfMemoryError:
        return 1
    torch.cuda.synchronize(device)
    per_image = max(torch.cuda.max_memory_allocated(device) - before, 1)
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return max(1, min(AUTO_MAX, int(AUTO_FRACTION * free / per_image)))


def in_batches(items: Sequence[T], batch_size: int | str | BatchPlan, launch: Callable[[Sequence[T]], Any],
               finish: Callable[[Any], list], device) -> list:  # fmt: skip
    """``finish(launch(chunk))`` over ``items`` in chunks, results concatenated in order: the Python API's loop
    (:meth:`vcritic.critic.Critic.score` and ``compare``), with the CLI's rules. ``"auto"`` measures the size first;
    a chunk that runs out of GPU memory is run again at half the size, so nothing is lost or run twice; an item
    that does not fit even alone raises :class:`VcriticError` (there is no error row to put it in).

    ``launch(chunk)`` prepares a chunk and queues its forward, returning results that may still be on the device;
    ``finish`` reads them back. One chunk stays in flight, as in the file loop: chunk k is finished after chunk k+1
    was launched, so preparing k+1 (decoding, preprocessing) overlaps the GPU's work on k."""
    from vcritic.in_flight import InFlight

    plan = BatchPlan.of(batch_size)
    if not items:
        return []
    if plan.current is None:
        plan.current = auto_batch_size(device, lambda: finish(launch(items[:1])))
    results: list = []
    in_flight = None  # the chunk launched last, not yet finished
    start = 0  # the first item not yet launched
    while start < len(items):
        chunk = items[start : start + plan.current]
        try:
            launched = InFlight(launch(chunk))
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            if in_flight is not None:  # launched before this ran out of memory: its results are good
                results += finish(in_flight.result())
                in_flight = None
            release_cached_memory(device)
            if plan.halve():
                continue
            raise VcriticError(
                f"item {start} of {len(items)} runs out of GPU memory even alone",
                hint="load the critic with a smaller max_pixels or image_size, or use a larger GPU",
            ) from None
        if in_flight is not None:
            results += finish(in_flight.result())
        in_flight = launched
        start += len(chunk)
    results += finish(in_flight.result())
    return results

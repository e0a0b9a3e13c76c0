"""The batch engine: batches of the size that fits, one in flight, and halving on CUDA out-of-memory.

:func:`run_batches` is the one loop around batches: the file pipeline (:mod:`vcritic.pipeline.scoring`, ``score``,
``compare``, ``rank``, ``bench``), the Python API (:func:`in_batches`: ``Critic.score`` and ``compare``) and the
training evaluation all run through it. Its rules:

- ``auto`` on CUDA: one image is run alone first and the peak memory it adds is measured; the batch size is then
  ``min(AUTO_MAX, floor(AUTO_FRACTION x free GPU memory / that peak))``, free memory counting what torch's cache holds
  unused. On CPU (and MPS) it is :data:`CPU_DEFAULT`: there is no memory figure worth trusting and larger batches
  gain little there.
- A batch that raises ``torch.cuda.OutOfMemoryError`` is retried at half the size, and every later batch runs at
  that size; the rows already given out stay. An input that does not fit even alone gets an error row (the Python
  API raises instead: there is no row to put the error in) and the run goes on. :class:`BatchPlan` carries the
  size in use, so a command's summary can report where it ended.
- :func:`retry_smaller` is that halving rule in one place; fixed shapes
  (:meth:`vcritic.inference.shapes.FixedShapes.run`) use it for their rows per forward too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from vcritic.errors import VcriticError

T = TypeVar("T")

AUTO = "auto"
CPU_DEFAULT = 8
AUTO_MAX = 128
AUTO_FRACTION = 0.8  # of free memory: activations are not exactly linear in the batch, and the allocator fragments
TOO_LARGE = "out of GPU memory even alone: lower --max-pixels or --image-size, or use a larger GPU"


class Halving(Protocol):
    """A size that halves after running out of GPU memory (:class:`BatchPlan`,
    :class:`vcritic.inference.shapes.FixedShapes`)."""

    def halve(self) -> bool: ...


def half_of(size: int | None) -> int | None:
    """The size to run again at after running out of GPU memory at ``size``; None at one: nothing smaller to try."""
    return size // 2 if size is not None and size > 1 else None


def halved_note(started: int) -> str:
    """How a summary says a size was halved: "halved from 16 after running out of GPU memory"."""
    return f"halved from {started} after running out of GPU memory"


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
        """Halve after an out-of-memory error (:func:`half_of`); False when already at one."""
        smaller = half_of(self.current)
        if smaller is None:
            return False
        if self.before_halving is None:
            self.before_halving = self.current
        self.current = smaller
        self.halvings += 1
        return True

    def describe(self) -> str:
        """For a summary: "batch size 8", "batch size 16 (auto)", "batch size 4 (halved from 16 after OOM)"."""
        if self.current is None:
            return f"batch size {self.requested}"
        text = f"batch size {self.current}"
        if self.halvings:
            return f"{text} ({halved_note(self.before_halving)})"
        return f"{text} (auto)" if self.requested == AUTO else text


def retry_smaller(err: BaseException, size: Halving, device) -> bool:
    """After a forward raised ``err``: True when it was CUDA's out-of-memory error and ``size`` halved, so the work
    can run again at the new size (the cached memory is released first); False for any other error, and for an
    out-of-memory error at size one."""
    if not is_out_of_memory(err):
        return False
    release_cached_memory(device)
    return size.halve()


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


# One batch as a fetcher hands it over: the input positions it holds, the inputs that failed before any model work
# (position -> reason), and what ``launch`` takes (None when every input failed).
Fetched = tuple[list[int], dict[int, str], Any]


def run_batches(count: int, batch_size: int | str | BatchPlan, device, fetch: Callable[[int, int], Iterable[Fetched]],
                launch: Callable[[Any], Any], finish: Callable[[Any], Any], *, run_one: Callable[[], Any],
                too_large: Callable[[list[int]], dict[int, str]], overlap: bool = True,
                ) -> Iterator[tuple[list[int], dict[int, str], Any]]:  # fmt: skip
    """The batch loop: ``(positions, errors, finish(launch(batch)))`` per batch of ``count`` inputs, in input order
    (outputs None where no input of the batch reached the model).

    ``fetch(start, size)`` yields the batches from input ``start`` on, ``size`` inputs each, prepared (decoded,
    tokenised, collated: in DataLoader workers for files); it is asked again from the first input not yet given
    out whenever the size changes. ``"auto"`` runs ``run_one()`` first to measure the size (module docstring). A
    batch whose launch runs out of GPU memory is fetched and run again at half the size, so no input is lost or run
    twice; at size one, ``too_large(positions)`` gives its error rows (or raises).

    ``launch(batch)`` queues the forward and returns results that may still be on the device; ``finish`` reads them
    back. With ``overlap`` one batch stays in flight: batch k is finished only after batch k+1 was launched, so the
    host prepares, launches and writes rows while the GPU computes. A batch's rows come out right after the next
    launch (the last batch's at the end), also when that launch raises (an error, Ctrl-C) or runs out of memory.
    ``overlap=False`` finishes each batch before fetching the next (for benchmarks)."""
    from vcritic.engine.in_flight import InFlight

    plan = BatchPlan.of(batch_size)
    if plan.current is None:
        plan.current = auto_batch_size(device, run_one)
    start = 0  # the first input not yet given out
    pending: list[tuple[list[int], dict[int, str], InFlight | None]] = []  # fetched, not yet given out

    def give_out(keep: int):
        """The fetched batches but the last ``keep``, in order; a batch that cannot be finished drops the later
        ones, so that rows never come out of order."""
        nonlocal start
        while len(pending) > keep:
            positions, errors, flight = pending.pop(0)
            try:
                outputs = finish(flight.result()) if flight else None
            except BaseException:
                pending.clear()
                raise
            start += len(positions) + len(errors)
            yield positions, errors, outputs

    while start < count:
        halved = False
        try:
            for positions, errors, batch in fetch(start, plan.current):
                launched = None
                if batch is not None:
                    try:
                        launched = InFlight(launch(batch))
                    except Exception as err:
                        # A batch still in flight was launched before this one ran out of memory: its results stand.
                        halved = retry_smaller(err, plan, device)
                        if halved:
                            break
                        if not is_out_of_memory(err):
                            raise
                        errors = {**errors, **too_large(positions)}  # one input alone does not fit
                        positions = []
                    finally:
                        batch = None
                pending.append((positions, errors, launched))
                yield from give_out(1 if overlap and launched is not None else 0)
        except GeneratorExit:
            raise
        except BaseException:
            yield from give_out(0)  # the batch in flight was computed before this failed: its rows are not lost
            raise
        yield from give_out(0)
        if not halved and start < count:  # the fetcher ended early: nothing is left that it could give
            break


def in_batches(items: Sequence[T], batch_size: int | str | BatchPlan, launch: Callable[[Sequence[T]], Any],
               finish: Callable[[Any], list], device) -> list:  # fmt: skip
    """``finish(launch(chunk))`` over ``items`` in chunks, results concatenated in order: :func:`run_batches` for
    the Python API (:meth:`vcritic.inference.critic.Critic.score` and ``compare``) and the training evaluation, where
    ``launch`` prepares its chunk itself. An item that does not fit even alone raises :class:`VcriticError`."""
    if not items:
        return []

    def fetch(start: int, size: int) -> Iterator[Fetched]:
        for first in range(start, len(items), size):
            chunk = items[first : first + size]
            yield list(range(first, first + len(chunk))), {}, chunk

    def too_large(positions: list[int]) -> dict[int, str]:
        raise VcriticError(
            f"item {positions[0]} of {len(items)} runs out of GPU memory even alone",
            hint="load the critic with a smaller max_pixels or image_size, or use a larger GPU",
        ) from None

    results: list = []
    for _, _, outputs in run_batches(len(items), batch_size, device, fetch, launch, finish,
                                     run_one=lambda: finish(launch(items[:1])), too_large=too_large):  # fmt: skip
        results += outputs
    return results

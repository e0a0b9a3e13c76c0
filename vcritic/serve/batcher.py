"""Dynamic batching for ``vcritic serve``: items from concurrent requests merged into model batches.

Requests put encoded items (one per image, or one per pair) on one asyncio queue, each with its own future. A
collector task takes up to ``max_batch`` items, waiting at most ``max_wait`` seconds after the first one, and hands
them to the model thread; while the model runs, the next batch gathers in the queue. Items are grouped by key (the
questions a score asks, or compare), since one forward reads one set of questions. Each result is set on its own
item's future, so every answer goes back to the request that asked.

The model runs in one thread (:class:`ModelThread`), never on the event loop. A batch that runs out of GPU memory
is run again at half the size and later batches stay at that size (:func:`vcritic.engine.batches.retry_smaller`, the
batch
engine's rule); an item too large even alone gets :data:`vcritic.engine.batches.TOO_LARGE` as its error. Any other
failure
of a batch is retried item by item, so one item's failure does not take its neighbours down.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any


class ItemError(Exception):
    """One item could not be run (for example: out of GPU memory even alone); the message says why."""


class ModelThread:
    """One daemon thread that runs every call on the model, in order: loading, then batches. A daemon, so a load or
    a batch still running when the process exits (a SIGTERM during loading) does not hold the exit."""

    def __init__(self, name: str = "vcritic-model"):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, future, loop = job
            try:
                result, error = fn(), None
            except BaseException as err:  # handed to the awaiting coroutine, whatever it is
                result, error = None, err
            with contextlib.suppress(RuntimeError):  # the event loop has closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, future, result, error)

    async def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the model thread, awaited without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((fn, future, loop))
        return await future

    def stop(self) -> None:
        self._jobs.put(None)


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # its request timed out or went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


@dataclass
class _Item:
    key: Hashable
    payload: Any
    future: asyncio.Future


class Batcher:
    """Collects items into batches and runs ``run_batch(key, payloads) -> results`` (one result per payload, in
    order) on the model thread.

    ``device()`` is the model's device (asked after a batch ran out of memory, to free its cached memory: the model
    loads after the batcher starts); ``on_batch(size, seconds)`` and ``on_halving(new_size)`` are for metrics.
    """

    def __init__(
        self,
        run_batch: Callable[[Hashable, Sequence[Any]], list[Any]],
        model_thread: ModelThread,
        *,
        max_batch: int,
        max_wait: float,
        device: Callable[[], Any],
        on_batch: Callable[[int, float], None] = lambda size, seconds: None,
        on_halving: Callable[[int], None] = lambda size: None,
    ):
        from vcritic.engine.batches import BatchPlan

        self.run_batch = run_batch
        self.model_thread = model_thread
        self.plan = BatchPlan(max_batch)  # current: the size in use, halved after running out of memory
        self.max_wait = max_wait
        self.device = device
        self.on_batch = on_batch
        self.on_halving = on_halving
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()

    def submit(self, key: Hashable, payloads: Sequence[Any]) -> list[asyncio.Future]:
        """Queue ``payloads`` under ``key``; one future per payload, with its result or its :class:`ItemError`."""
        loop = asyncio.get_running_loop()
        futures = []
        for payload in payloads:
            future = loop.create_future()
            self._queue.put_nowait(_Item(key, payload, future))
            futures.append(future)
        return futures

    async def run(self) -> None:
        """Collect and run batches until cancelled."""
        while True:
            batch = await self._collect()
            groups: dict[Hashable, list[_Item]] = {}
            for item in batch:
                if not item.future.done():  # a request that timed out meanwhile needs nothing more
                    groups.setdefault(item.key, []).append(item)
            for key, items in groups.items():
                payloads = [item.payload for item in items]
                results = await self.model_thread.call(lambda key=key, payloads=payloads: self._run(key, payloads))
                for item, result in zip(items, results, strict=True):
                    _settle(item.future, None if isinstance(result, BaseException) else result,
                            result if isinstance(result, BaseException) else None)  # fmt: skip

    async def _collect(self) -> list[_Item]:
        """The next batch: everything already queued up to the batch size, else what arrives before the first
        item's deadline."""
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.plan.current:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch

    def _run(self, key: Hashable, payloads: Sequence[Any]) -> list[Any]:
        """On the model thread: results for ``payloads``, in chunks of the current batch size, halving on
        out-of-memory; an exception in the list stands for an item that failed alone."""
        from vcritic.engine.batches import TOO_LARGE, is_out_of_memory, retry_smaller

        results: list[Any] = []
        start = 0
        while start < len(payloads):
            chunk = payloads[start : start + self.plan.current]
            started = time.perf_counter()
            try:
                found = self.run_batch(key, chunk)
            except Exception as err:
                if is_out_of_memory(err):
                    # A batch gathered short of the size in use: halve what ran, not the size it did not reach.
                    self.plan.current = min(self.plan.current, len(chunk))
                    if retry_smaller(err, self.plan, self.device()):  # the rest of this batch runs at the new size
                        self.on_halving(self.plan.current)
                        continue
                    results.append(ItemError(TOO_LARGE))
                    start += 1
                elif len(chunk) > 1:  # find the item that fails; its neighbours are still read
                    results += [self._run_alone(key, payload) for payload in chunk]
                    start += len(chunk)
                else:
                    results.append(ItemError(_describe(err)))
                    start += 1
                continue
            self.on_batch(len(chunk), time.perf_counter() - started)
            results += found
            start += len(chunk)
        return results

    def _run_alone(self, key: Hashable, payload: Any) -> Any:
        try:
            return self.run_batch(key, [payload])[0]
        except Exception as err:
            return ItemError(_describe(err))


def _describe(err: BaseException) -> str:
    message = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {message}" if message else type(err).__name__

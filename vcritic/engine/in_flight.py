"""Results of a launched batch on their way to host memory, so the next batch can be launched before they are read.

On a GPU, reading a result (``.tolist()``, ``.cpu()``) waits for everything queued before the read, which would
include a batch launched after it. :class:`InFlight` queues the copy right after the batch's own work instead, into
pinned memory, and records an event there: :meth:`InFlight.result` then waits for that batch alone. On a CPU the
results are already there and nothing is copied.
"""

from __future__ import annotations


class InFlight:
    """A launched batch's results (tensors, lists or dataclasses of them): :meth:`result` gives them on the host."""

    def __init__(self, value):
        import torch

        streams: dict = {}
        self.value = _to_host(value, streams)
        self.events = []
        for stream in streams.values():
            event = torch.cuda.Event()
            event.record(stream)
            self.events.append(event)

    def result(self):
        for event in self.events:
            event.synchronize()
        return self.value


def _to_host(value, streams: dict):
    """``value`` (tensors, lists/tuples, dataclasses of them) with its CUDA tensors copied to the CPU, non-blocking;
    ``streams`` collects the streams the copies were queued on."""
    import dataclasses

    import torch

    if isinstance(value, torch.Tensor):
        if not value.is_cuda:
            return value
        streams.setdefault(value.device, torch.cuda.current_stream(value.device))
        return value.to("cpu", non_blocking=True)  # torch allocates pinned memory for this
    if isinstance(value, list | tuple):
        return type(value)(_to_host(item, streams) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _to_host(getattr(value, f.name), streams) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    return value

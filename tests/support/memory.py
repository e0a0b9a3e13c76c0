"""CUDA out-of-memory on CPU, for the tests of the batch halving: a hook that raises the real error."""

from __future__ import annotations

import torch


class OutOfMemoryAbove:
    """A real forward pre-hook on the model: batches larger than ``limit`` rows raise CUDA's OOM error."""

    def __init__(self, model, limit: int):
        self.limit, self.seen = limit, []
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        rows = kwargs["input_ids"].shape[0]
        self.seen.append(rows)
        if rows > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected: {rows} rows > {self.limit})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()

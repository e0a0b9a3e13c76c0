"""Data order and learning-rate schedule, both pure functions of the config, so a resumed run repeats them."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

from vcritic.training.config import TrainConfig


class TaskBatchSampler:
    """Batches of indices that each hold one task (the paper trains one task per batch).

    The order depends only on ``seed`` and the epoch (:meth:`set_epoch`), so the data position of a run is its
    micro-batch count. A task's last batch is filled up with other samples of the same task, so every batch is
    full (even sharding across processes needs that) and no sample is left out.
    """

    def __init__(self, tasks: Sequence[str], batch_size: int, seed: int):
        self.groups: dict[str, list[int]] = {}
        for index, task in enumerate(tasks):
            self.groups.setdefault(task, []).append(index)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(math.ceil(len(g) / self.batch_size) for g in self.groups.values())

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        batches = []
        for task in sorted(self.groups):
            indices = list(self.groups[task])
            rng.shuffle(indices)
            missing = -len(indices) % self.batch_size
            indices += [indices[i % len(indices)] for i in range(missing)]
            batches += [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        rng.shuffle(batches)
        return iter(batches)


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up from ``warmup_lr`` to ``lr``, then cosine decay to ``min_lr`` at ``steps`` (or constant)."""
    if step < config.warmup_steps:
        return config.warmup_lr + (config.lr - config.warmup_lr) * step / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

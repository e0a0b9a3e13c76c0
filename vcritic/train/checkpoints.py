"""Checkpoints of a run, ``OUT/checkpoints/step-N``: written atomically, the newest ``keep`` kept.

A checkpoint is written into a hidden temporary folder, flushed to disk, then renamed into place, so a kill while
saving leaves the previous checkpoint intact and never a half-written one under a final name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
POSITION = "position.json"
_STEP = re.compile(r"^step-(\d+)$")


def checkpoint_dirs(output: Path) -> list[Path]:
    """Complete checkpoints of ``output``, oldest first."""
    folder = output / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP.match(p.name)) and (p / POSITION).is_file()]
    return [p for _, p in sorted(found)]


def read_position(checkpoint: Path) -> dict:
    return json.loads((checkpoint / POSITION).read_text())


def save_checkpoint(accelerator, output: Path, step: int, position: dict, keep: int) -> Path:
    """``accelerator.save_state`` (model, optimizer, scheduler, RNG) plus the data position, atomically."""
    folder = output / CHECKPOINTS
    final = folder / f"step-{step}"
    tmp = folder / f".tmp-step-{step}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (tmp / POSITION).write_text(json.dumps({"step": step, **position}))
            _fsync_tree(tmp)
    except BaseException:
        # A full disk: give back what the half-written copy took; the previous checkpoint was never touched.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(folder)
        for old in checkpoint_dirs(output)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


@dataclass
class StepBoundary:
    """What a checkpoint records that changes inside an optimizer step besides the weights: the random number
    generators (dropout) and accelerate's micro-batch counter (gradient accumulation). Taken where a step ends
    and put back before a checkpoint is saved mid-step (a failure, Ctrl-C), so that checkpoint is exactly the one
    the step's end would have written and ``--resume`` repeats the uninterrupted run."""

    python: Any
    numpy: Any
    torch: Any
    cuda: Any
    micro_batches: int

    @classmethod
    def take(cls, accelerator) -> StepBoundary:
        import random

        import numpy as np
        import torch

        # Only when CUDA is in use: asking for its generators would initialise CUDA in a CPU run.
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        return cls(random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda, accelerator.step)

    def restore(self, accelerator) -> None:
        import random

        import numpy as np
        import torch

        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        accelerator.step = self.micro_batches


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename is still atomic
    finally:
        os.close(fd)

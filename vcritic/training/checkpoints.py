"""Checkpoints of a run, ``OUT/checkpoints/step-N``: written atomically, the newest ``keep`` kept, read back safely.

A checkpoint is written into a hidden temporary folder, flushed to disk, then renamed into place, so a kill while
saving leaves the previous checkpoint intact and never a half-written one under a final name.

A checkpoint folder is data, never code. accelerate writes the trained weights as safetensors and the optimizer and
random number generators with ``torch.save``; the learning-rate scheduler goes to ``scheduler.json`` (accelerate's
own place for it, ``custom_checkpoint_0.pkl``, is always unpickled with ``weights_only=False``, so a planted object
there would run). Before resuming, every pickled file is opened with ``torch.load(weights_only=True)`` (plain tensors,
numbers, strings and numpy arrays only) and one that holds anything else is refused unless ``allow_pickle``; then
accelerate reads the folder through a view that leaves out ``custom_checkpoint_*`` files.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcritic.base.files import fsync_folder
from vcritic.base.limits import MAX_SMALL_JSON_BYTES, read_json_object
from vcritic.errors import VcriticError

CHECKPOINTS = "checkpoints"
POSITION = "position.json"
SCHEDULER = "scheduler.json"
_CUSTOM = re.compile(r"^custom_checkpoint_\d+\.pkl$")
_NOT_PICKLED = (".safetensors", ".json")
_STEP = re.compile(r"^step-(\d+)$")
_DAMAGED = "the checkpoint is damaged: remove that checkpoint folder, and --resume continues from the one before"


def checkpoint_dirs(output: Path) -> list[Path]:
    """Complete checkpoints of ``output``, oldest first."""
    folder = output / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP.match(p.name)) and (p / POSITION).is_file()]
    return [p for _, p in sorted(found)]


def read_position(checkpoint: Path) -> dict:
    """The checkpoint's ``position.json``: its step (a whole number, 0 or more) and data position."""
    path = checkpoint / POSITION
    position = read_json_object(path, "a position.json", _DAMAGED, MAX_SMALL_JSON_BYTES)
    step = position.get("step")
    if type(step) is not int or step < 0:
        raise VcriticError(f"{path} is not a position.json vcritic can read: no whole 'step'", hint=_DAMAGED)
    return position


def save_checkpoint(accelerator, output: Path, step: int, position: dict, keep: int, scheduler=None) -> Path:
    """``accelerator.save_state`` (model, optimizer, RNG) plus the data position and ``scheduler``'s state as JSON,
    atomically."""
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
            if scheduler is not None:
                (tmp / SCHEDULER).write_text(json.dumps(scheduler.state_dict()))
            _fsync_tree(tmp)
    except BaseException:
        # A full disk: give back what the half-written copy took; the previous checkpoint was never touched.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_folder(folder)
        for old in checkpoint_dirs(output)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, checkpoint: Path, scheduler, *, allow_pickle: bool = False) -> None:
    """Put a run back as ``checkpoint`` saved it (weights, optimizer, RNG, micro-batch counter, ``scheduler``) without
    unpickling anything but plain data, unless ``allow_pickle``."""
    import tempfile

    files = [p for p in sorted(checkpoint.iterdir()) if not p.name.startswith(".")]
    for path in files:
        if not path.is_dir() and not path.is_file():  # a FIFO would hang the reader, a device feed it anything
            raise VcriticError(
                f"{path} is not a regular file",
                hint="remove that checkpoint folder; --resume then continues from the one before",
            )
    state = read_scheduler_state(checkpoint)  # before the weights: a damaged one is refused before any work
    if not allow_pickle:
        for path in files:
            if path.is_file() and not path.name.endswith(_NOT_PICKLED) and not _CUSTOM.match(path.name):
                _load_plain(path)
    # accelerate reads a folder; this one holds links to the checked files only. Its custom_checkpoint_* files
    # are unpickled with weights_only=False, and they are vcritic's no longer (the scheduler is scheduler.json).
    with tempfile.TemporaryDirectory(prefix="vcritic-resume-") as view:
        for path in files:
            if not _CUSTOM.match(path.name):
                os.symlink(path.resolve(), Path(view) / path.name)
        try:
            accelerator.load_state(view, load_kwargs={"weights_only": False} if allow_pickle else None, strict=False)
        except pickle.UnpicklingError as err:  # a file changed since it was checked: still refused by accelerate
            raise _refused(checkpoint, str(err)) from None
    source = checkpoint / SCHEDULER
    if state is None:  # a checkpoint from before scheduler.json: accelerate's pickle, read as plain data
        source = checkpoint / "custom_checkpoint_0.pkl"
        state = _load_plain(source) if not allow_pickle else _torch_load(source, weights_only=False)
    try:
        scheduler.load_state_dict(state)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise _damaged(source, err) from None


def read_scheduler_state(checkpoint: Path) -> dict | None:
    """The scheduler state in ``checkpoint``'s ``scheduler.json``; None for a checkpoint from before that file."""
    path = checkpoint / SCHEDULER
    if not path.is_file():
        return None
    return read_json_object(path, "a scheduler.json", _DAMAGED, MAX_SMALL_JSON_BYTES)


def _load_plain(path: Path):
    """``path`` read by torch's restricted unpickler: tensors, numbers, strings, containers and numpy arrays (the
    RNG states). Anything else is refused, naming the file."""
    from vcritic.model.compat import numpy_array_unpickling

    try:
        return _torch_load(path, weights_only=True, allowed=numpy_array_unpickling())
    except pickle.UnpicklingError as err:
        raise _refused(path.parent, str(err), path.name) from None
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        raise _damaged(path, err) from None


def _damaged(path: Path, err: BaseException) -> VcriticError:
    return VcriticError(
        f"cannot read {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}",
        hint=_DAMAGED,
    )


def _torch_load(path: Path, *, weights_only: bool, allowed: list | None = None):
    import torch

    kwargs: dict[str, Any] = {"map_location": "cpu", "weights_only": weights_only}
    if weights_only and zipfile.is_zipfile(path):
        kwargs["mmap"] = True  # only the pickled structure is read here, not the tensors of a large optimizer
    if not allowed:
        return torch.load(path, **kwargs)
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, **kwargs)


def _refused(checkpoint: Path, reason: str, name: str | None = None) -> VcriticError:
    detail = re.search(r"Unsupported global: GLOBAL (\S+)", reason)
    what = f" ({detail.group(1)})" if detail else ""
    where = checkpoint / name if name else checkpoint
    return VcriticError(
        f"{where} holds a pickled object that is not plain data{what}; loading it could run code, so it was not loaded",
        hint="if you wrote this checkpoint yourself and trust it, pass --allow-pickle; otherwise remove that "
        "checkpoint folder (--resume then continues from the one before) or start again with --overwrite",
    )


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
    fsync_folder(root)

"""How a run stops: its errors, the points where all processes agree to go on or to stop, and the one message a
stopped run ends with (what stopped it, and which checkpoint ``--resume`` continues from)."""

from __future__ import annotations

from pathlib import Path

from vcritic.errors import VcriticError
from vcritic.training.checkpoints import checkpoint_dirs


class TrainingInterrupted(VcriticError):
    """Ctrl-C during training: a checkpoint was saved; exit status 130."""

    exit_code = 130


class TrainingFailed(VcriticError):
    """Training stopped on an error; the last completed step was saved where that was possible (the message
    says which checkpoint ``--resume`` continues from). The original error is the ``__cause__``."""


class NonFiniteLoss(VcriticError):
    """The loss became NaN or infinite: the weights are no longer worth a checkpoint."""


class ProcessFailed(Exception):
    """Raised on every process at a point where they agreed to stop: ``error`` on the processes that failed,
    None on the others; ``ranks`` are the processes that failed."""

    def __init__(self, error: BaseException | None, ranks: list[int]):
        super().__init__(str(error) if error else f"process {ranks} failed")
        self.error, self.ranks = error, ranks


def agree(accelerator, error: BaseException | None) -> None:
    """Raise :class:`ProcessFailed` on every process if ``error`` is set on any of them. All processes call this
    at the same points (after loading a batch, after its forward pass), outside any other collective, so one that
    failed there does not leave the others waiting for it: they stop together and save together. One flag per
    process is gathered; a single process only checks its own."""
    if accelerator.num_processes == 1:
        if error is not None:
            raise ProcessFailed(error, [0])
        return
    import torch

    flags = accelerator.gather(torch.tensor([float(error is not None)], device=accelerator.device))
    ranks = [rank for rank, flag in enumerate(flags.tolist()) if flag]
    if ranks:
        raise ProcessFailed(error, ranks)


def one_line(error: BaseException) -> str:
    """One line for an error: vcritic's own message, or the exception's type and first line."""
    if isinstance(error, VcriticError):
        return error.message
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def stopped(
    err: BaseException,
    cause: BaseException | None,
    step: int,
    steps: int,
    output: Path,
    saved: int | None,
    save_error: BaseException | None,
    *,
    applying: bool,
    together: bool,
) -> VcriticError:
    """The one error a stopped run ends with: what stopped it, and which checkpoint ``--resume`` continues from."""
    resume = f"run the same command plus --resume (output: {output})"
    if isinstance(err, KeyboardInterrupt):
        kind, what = TrainingInterrupted, f"interrupted at step {step} of {steps}"
    else:
        if cause is None:  # another process failed; it printed its own error
            ranks = err.ranks if isinstance(err, ProcessFailed) else []
            failure = f"process {', '.join(map(str, ranks))} failed (its own message says why)"
        else:
            failure = one_line(cause)
        kind, what = TrainingFailed, f"training failed in step {step + 1} of {steps}: {failure}"
    if saved is not None:
        if kind is TrainingInterrupted:
            hint = f"continue with the same command plus --resume (output: {output})"
            return kind(f"{what}; checkpoint saved", hint=hint)
        return kind(what, hint=f"step {saved} is saved as checkpoints/step-{saved}; fix the cause, then {resume}")
    if applying:
        why = f"step {step + 1}'s update was half applied, so it was not saved"
    elif save_error is not None:
        why = f"saving a checkpoint failed too ({one_line(save_error)})"
    elif not together:
        why = "with several processes, only a failure while loading a batch or in the forward pass can be saved"
    else:
        why = "nothing was saved"
    newest = checkpoint_dirs(output)
    if newest:
        hint = f"the newest checkpoint, {newest[-1].name}, is intact: fix the cause, then {resume}"
    else:
        hint = "there is no checkpoint yet: fix the cause, then start again with --overwrite"
    return kind(f"{what}; {why}", hint=hint)


def result_failed(error: BaseException, step: int, output: Path) -> TrainingFailed:
    """The error for a run that did all its steps but could not write its result (a full disk at the very end)."""
    newest = checkpoint_dirs(output)
    hint = "fix the cause, then start again with --overwrite"
    if newest:
        hint = f"fix the cause, then run the same command plus --resume (output: {output}): it continues from "
        hint += f"{newest[-1].name}" + (" and only writes the output" if newest[-1].name == f"step-{step}" else "")
    return TrainingFailed(
        f"training did all {step} steps, but writing the result to {output} failed: {one_line(error)}", hint=hint
    )

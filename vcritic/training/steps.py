"""The step loop: optimizer steps from where a run stands to ``config.steps``, with the log, periodic evaluation and
checkpoints on the way, and on a failure or Ctrl-C the last completed step saved where that is safe."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vcritic.data.datadir import TrainData
from vcritic.errors import VcriticError
from vcritic.training.checkpoints import StepBoundary, checkpoint_dirs, save_checkpoint
from vcritic.training.config import TrainConfig
from vcritic.training.prepare import Prepared
from vcritic.training.run_folder import append_metrics
from vcritic.training.stopping import NonFiniteLoss, ProcessFailed, agree, stopped


class StepLoop:
    """Steps ``prepared``'s model from ``step`` (0, or the checkpoint a run resumes) to ``config.steps``; progress
    records go to ``emit`` on the main process. ``step`` is the last completed step, ``last_saved`` the newest
    checkpoint's."""

    def __init__(
        self,
        prepared: Prepared,
        output: Path,
        config: TrainConfig,
        data: TrainData,
        emit: Callable[[dict[str, Any]], None],
        step: int,
    ):
        self.prepared, self.output, self.config, self.data, self.emit = prepared, output, config, data, emit
        accelerator = prepared.accelerator
        self.main = accelerator.is_main_process
        per_epoch = len(prepared.loader)
        if per_epoch == 0:
            raise VcriticError("no training batch: every task has fewer dialogues than processes", hint="add data")
        self.step = self.last_saved = step
        self.epoch, self.skip = divmod(step * config.grad_accum, per_epoch)
        self.samples_per_step = config.samples_per_step * accelerator.num_processes
        self.losses: list = []  # this step's micro-batch losses (tensors, read out only when logged)
        self.applying = False  # inside an optimizer step: the weights may be half updated, so nothing may be saved
        self.said_nothing_to_evaluate = False

    def checkpoint(self) -> None:
        accelerator, scheduler = self.prepared.accelerator, self.prepared.scheduler
        keep = self.config.keep_checkpoints
        path = save_checkpoint(accelerator, self.output, self.step, {"epoch": self.epoch}, keep, scheduler)
        if self.main:
            self.emit({"event": "checkpoint", "step": self.step, "path": str(path)})

    def save_last(self) -> None:
        """The last step as a checkpoint, unless it is one already: a failed export resumes from there."""
        if self.step > self.last_saved or not checkpoint_dirs(self.output):
            self.checkpoint()

    def run(self) -> None:
        """Step to ``config.steps``; a failure or Ctrl-C ends in one :class:`VcriticError` that says what was saved."""
        self.prepared.net.train()
        self.started, self.start_step = time.monotonic(), self.step
        self.boundary = StepBoundary.take(self.prepared.accelerator)  # where the last completed step ended
        try:
            while self.step < self.config.steps:
                self._epoch()
                if self.step < self.config.steps:
                    self.epoch, self.skip = self.epoch + 1, 0
        except (KeyboardInterrupt, Exception) as err:
            if isinstance(err, NonFiniteLoss):
                raise  # NaN weights are worth no checkpoint; the newest one stays the newest
            cause = err.error if isinstance(err, ProcessFailed) else err
            raise self._save_on_stop(err, cause) from (None if isinstance(err, KeyboardInterrupt) else cause)

    def _epoch(self) -> None:
        """The rest of the current epoch, or up to the last step."""
        prepared = self.prepared
        accelerator = prepared.accelerator
        # accelerate's loader sets its own epoch counter on the sampler when iterated; keep both at ours.
        prepared.loader.set_epoch(self.epoch)
        prepared.sampler.set_epoch(self.epoch)
        batches = iter(accelerator.skip_first_batches(prepared.loader, self.skip) if self.skip else prepared.loader)
        while True:
            # Loading (a corrupt image found late) and the forward pass (out of memory) may fail on one process
            # only: each is followed by a point where all processes agree to go on or to stop.
            batch, error = _next_batch(batches)
            agree(accelerator, error)
            if batch is None:
                return
            self.losses.append(self._micro_step(batch).detach().float())
            if not accelerator.sync_gradients:
                continue
            prepared.scheduler.step()
            self.step += 1
            self.applying = False
            self.boundary = StepBoundary.take(accelerator)
            self._after_step()
            if self.step >= self.config.steps:
                return

    def _micro_step(self, batch):
        """Forward and backward on one micro-batch; the optimizer steps on the last of a step's ``grad_accum``."""
        from vcritic.training.trainable import answer_loss

        prepared, config = self.prepared, self.config
        accelerator = prepared.accelerator
        with accelerator.accumulate(prepared.net):
            loss, error = None, None
            try:
                loss = answer_loss(prepared.net, batch, prepared.dtype)
            except Exception as err:
                error = err
            agree(accelerator, error)
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(prepared.params, config.max_grad_norm)
            self.applying = accelerator.sync_gradients
            prepared.optimizer.step()
            prepared.optimizer.zero_grad()
        return loss

    def _after_step(self) -> None:
        config, step = self.config, self.step
        if step % config.log_every == 0 or step == config.steps:
            self._log()
        if config.eval_every and step % config.eval_every == 0 and self.data.val:
            self._evaluate()
        if config.save_every and step % config.save_every == 0 and step < config.steps:
            self.checkpoint()
            self.last_saved = step

    def _log(self) -> None:
        import torch

        from vcritic.training.sampler import lr_at

        step = self.step
        mean = self.prepared.accelerator.reduce(torch.stack(self.losses).mean(), "mean").item()
        elapsed = time.monotonic() - self.started
        rate = (step - self.start_step) * self.samples_per_step / max(elapsed, 1e-9)
        record = {
            "step": step,
            "loss": round(mean, 6),
            "lr": lr_at(step - 1, self.config),
            "samples_per_s": round(rate, 3),
            "epoch": self.epoch,
        }
        if not math.isfinite(mean):
            raise NonFiniteLoss(f"the loss became {mean} at step {step}", hint="lower --lr")
        if self.main:
            append_metrics(self.output, record)
            eta = (self.config.steps - step) * elapsed / (step - self.start_step)
            self.emit({"event": "step", **record, "elapsed_s": elapsed, "eta_s": eta})
        self.losses.clear()

    def _evaluate(self) -> None:
        results = _held_out_figures(self.prepared, self.data, self.config)
        if self.main and results:
            record = {"step": self.step, "eval": results}
            append_metrics(self.output, record)
            self.emit({"event": "eval", **record})
        elif self.main and not self.said_nothing_to_evaluate:
            # evaluate() measures pairs, rated quality dialogues and declines only; say so once.
            self.said_nothing_to_evaluate = True
            message = (
                "val.jsonl has nothing to evaluate (relativity pairs, 3 or more quality dialogues with a MOS, or "
                "declines)"
            )
            self.emit({"event": "warning", "message": message})

    def _save_on_stop(self, err: BaseException, cause: BaseException | None) -> VcriticError:
        """Save the last completed step where that is safe, and the error the run ends with."""
        accelerator = self.prepared.accelerator
        # Every process of a run gets Ctrl-C, and a failure that went through agree() is known to all of them, so
        # they save together (saving is collective). Any other failure may be on one process only, while the
        # others wait inside a collective for it: saving there would hang, so the launcher ends the others.
        together = isinstance(err, KeyboardInterrupt | ProcessFailed) or accelerator.num_processes == 1
        if not together or self.applying:
            saved, save_error = None, None  # half-updated weights: the newest checkpoint stays the newest
        elif self.step == self.last_saved and checkpoint_dirs(self.output):
            saved, save_error = self.step, None
        else:
            self.boundary.restore(accelerator)  # the RNG and micro-batch counter of the last completed step
            try:
                self.checkpoint()
                saved, save_error = self.step, None
            except Exception as failed:
                saved, save_error = None, failed
        return stopped(
            err,
            cause,
            self.step,
            self.config.steps,
            self.output,
            saved,
            save_error,
            applying=self.applying,
            together=together,
        )


def _next_batch(batches) -> tuple[Any, BaseException | None]:
    """The next batch, or (None, None) at the end of the epoch, or (None, error) when loading it failed (the
    DataLoader opens the images: a file corrupted since the run started is found here)."""
    try:
        return next(batches), None
    except StopIteration:
        return None, None
    except Exception as err:
        return None, err


def _held_out_figures(prepared: Prepared, data: TrainData, config: TrainConfig) -> dict:
    """Held-out figures on the main process, read out through :class:`Critic` as ``compare``/``score`` do."""
    from vcritic.inference.critic import Critic
    from vcritic.training.evaluate import evaluate, evaluation_sample

    accelerator = prepared.accelerator
    results: dict = {}
    error = None
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(prepared.net)
        model.eval()
        critic = Critic(
            model,
            prepared.processor,
            family=prepared.family,
            device=accelerator.device,
            dtype=prepared.dtype,
            source="training",
        )
        try:
            with accelerator.autocast():
                held_out = evaluation_sample(data.val, config.eval_samples)
                results = evaluate(critic, held_out, data.root, batch_size=config.batch_size)
        except Exception as err:  # a held-out image gone bad, out of memory: the others hear of it below
            error = err
        model.train()
    agree(accelerator, error)  # also where the other processes wait for the evaluation
    return results

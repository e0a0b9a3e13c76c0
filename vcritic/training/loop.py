"""``vcritic train``: one stage of the curriculum on ``accelerate``, written as a vcritic trained directory.

The run folder ``OUT`` holds, as it goes: ``.vcritic-output.json`` (vcritic's mark on a folder it made, and the names
it wrote there: ``--overwrite`` replaces only such a folder, and only those), ``run.json`` (what was asked: model,
data, stage, config),
``metrics.jsonl`` (one JSON object per log line), ``checkpoints/step-N`` (resumable state), and at the end the
trained directory itself: ``vcritic.json``, the peft adapter (safetensors), the processor files and, for a stage
trained on top of an earlier one, that stage's adapters under ``previous/``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Collection
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcritic.base.files import check_output_folder, locked_folder, write_json_atomically, write_text_atomically
from vcritic.data.dialogues import Dialogue, read_dialogues
from vcritic.errors import VcriticError
from vcritic.model.vcritic_json import (
    MANIFEST,
    WHOLE_MODEL,
    manifest_adapters,
    manifest_base,
    manifest_stages,
    manifest_trained_on,
    write_manifest,
)
from vcritic.pipeline.distributed import check_launch_device
from vcritic.training.checkpoints import (
    CHECKPOINTS,
    StepBoundary,
    checkpoint_dirs,
    load_checkpoint,
    read_position,
    save_checkpoint,
)
from vcritic.training.config import TrainConfig

RUN = "run.json"
OWNED = ".vcritic-output.json"  # written first in a run folder: the proof it is vcritic's, and what it wrote there
METRICS = "metrics.jsonl"
PREVIOUS = "previous"
# Keys that may change when a run is resumed: they do not alter what is computed up to the checkpoint.
RESUMABLE_CHANGES = ("steps", "log_every", "save_every", "eval_every", "keep_checkpoints", "eval_samples", "workers")


class TrainingInterrupted(VcriticError):
    """Ctrl-C during training: a checkpoint was saved; exit status 130."""

    exit_code = 130


class TrainingFailed(VcriticError):
    """Training stopped on an error; the last completed step was saved where that was possible (the message
    says which checkpoint ``--resume`` continues from). The original error is the ``__cause__``."""


class _NonFiniteLoss(VcriticError):
    """The loss became NaN or infinite: the weights are no longer worth a checkpoint."""


class _ProcessFailed(Exception):
    """Raised on every process at a point where they agreed to stop: ``error`` on the processes that failed,
    None on the others; ``ranks`` are the processes that failed."""

    def __init__(self, error: BaseException | None, ranks: list[int]):
        super().__init__(str(error) if error else f"process {ranks} failed")
        self.error, self.ranks = error, ranks


@dataclass
class Trained:
    """What a run produced: the output folder, and the trained model in memory (unmerged peft model)."""

    output: Path
    model: Any
    processor: Any
    family: Any
    main_process: bool = True  # False in the other processes of a multi-process run


@dataclass
class TrainData:
    dialogues: list[Dialogue]
    val: list[Dialogue]
    root: Path
    info: dict[str, Any]


def read_data(folder: Path) -> TrainData:
    """A folder written by ``vcritic data build`` / ``vcritic data synth``: dialogues.jsonl, val.jsonl, data.json."""
    folder = Path(folder).expanduser()
    path = folder / "dialogues.jsonl"
    if not folder.is_dir():
        raise VcriticError(
            f"--data {folder} is not a folder" if folder.exists() else f"--data: no such folder: {folder}",
            hint="give the folder vcritic data build --out (or data synth) wrote",
        )
    if not path.is_file():
        raise VcriticError(f"{folder} has no dialogues.jsonl", hint="build it with: vcritic data build --out DIR")
    dialogues = list(read_dialogues(path))
    if not dialogues:
        raise VcriticError(f"{path} has no dialogues", hint="rebuild it with: vcritic data build")
    val = list(read_dialogues(folder / "val.jsonl")) if (folder / "val.jsonl").is_file() else []
    info: dict[str, Any] = {}
    if (folder / "data.json").is_file():
        try:
            info = json.loads((folder / "data.json").read_text())
        except json.JSONDecodeError as err:
            raise VcriticError(
                f"{folder / 'data.json'} is not valid JSON: {err.msg}", hint="rebuild the data"
            ) from None
    _check_images(folder, dialogues + val)
    return TrainData(dialogues, val, folder, info)


def _check_images(folder: Path, dialogues: list[Dialogue]) -> None:
    """Refuse, before the model loads, dialogues whose images are gone (a moved dataset, a deleted file): found
    mid-run they stopped training with "file not found" and lost the steps since the last checkpoint."""
    names = {name for dialogue in dialogues for name in dialogue.images}
    missing = sorted(
        name for name in names if not (Path(name) if Path(name).is_absolute() else folder / name).is_file()
    )
    if missing:
        raise VcriticError(
            f"{len(missing)} image(s) named in {folder} are missing, e.g. {missing[0]}",
            hint="restore them, or rebuild the data folder with vcritic data build/synth",
        )


def check_output(output: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse, before any work, an output that would be overwritten without ``overwrite`` (or not resumed), and an
    ``overwrite`` of a folder that is not a vcritic training output or holds anything vcritic did not write there."""
    ours = (output / RUN).is_file() or (output / MANIFEST).is_file()
    if resume:
        if not checkpoint_dirs(output):
            # A run stopped before its first checkpoint left run.json: rerunning without --resume is refused too.
            hint = "start it again with --overwrite" if ours else "start the run without --resume"
            raise VcriticError(f"nothing to resume in {output}: no checkpoint", hint=hint)
        return
    check_output_folder(output, hint="choose another --output")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            if not ours:
                hint = "choose an empty folder"
            elif checkpoint_dirs(output):
                hint = "pass --resume to continue it, or --overwrite to start again"
            else:
                hint = "it stopped before its first checkpoint, so there is nothing to resume: pass --overwrite"
            raise VcriticError(f"{output} already exists and is not empty", hint=hint)
        # A run.json alone proves nothing (any folder can hold one): only vcritic's own marker does.
        if not (output / OWNED).is_file():
            raise VcriticError(
                f"{output} is not a folder vcritic train made (it has no {OWNED}); --overwrite only replaces those",
                hint="choose an empty or new folder (an output of an earlier vcritic version has no marker: delete it "
                "yourself if it is one)",
            )
        stray = _not_written_by_vcritic(output)
        if stray:
            raise VcriticError(
                f"{output} holds {stray}, which vcritic did not write; --overwrite would delete it",
                hint="move it out of the folder, or choose another --output",
            )


def _written_by_vcritic(output: Path) -> set[str]:
    """The names directly in ``output`` that vcritic train wrote there, as its marker records them."""
    try:
        recorded = json.loads((output / OWNED).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        recorded = []
    names = {name for name in recorded if isinstance(name, str) and "/" not in name and name not in ("", ".", "..")}
    return {OWNED, RUN, METRICS, CHECKPOINTS, *names}


def _not_written_by_vcritic(output: Path) -> str | None:
    """One entry of ``output`` (or of its checkpoints folder) that vcritic did not write, or None."""
    known = _written_by_vcritic(output)
    for entry in sorted(output.iterdir()):
        if entry.name not in known:
            return entry.name
    checkpoints = output / CHECKPOINTS
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        for entry in sorted(checkpoints.iterdir()):
            if not re.match(r"^(\.tmp-)?step-\d+$", entry.name) or entry.is_symlink():
                return f"{CHECKPOINTS}/{entry.name}"
    elif checkpoints.exists() or checkpoints.is_symlink():
        return CHECKPOINTS
    return None


def _record_written(output: Path, before: set[str]) -> None:
    """Add to the marker what appeared in ``output`` since ``before`` (the trained directory's files), so a later
    ``--overwrite`` knows them as vcritic's."""
    try:
        now = {entry.name for entry in output.iterdir()}
        record = json.loads((output / OWNED).read_text())
    except (OSError, ValueError):
        return
    record["files"] = sorted(set(record.get("files", [])) | (now - before))
    write_json_atomically(output / OWNED, record)


def _check_not_inputs(output: Path, *, model: str, data: Path) -> None:
    """Refuse an output that is, or holds, the --model folder or the --data folder: the run starts by emptying it,
    and a later stage's export copies the earlier stage's adapters out of --model."""
    where = output.resolve()
    for flag, folder in (("--model", Path(model).expanduser()), ("--data", data)):
        if folder.is_dir() and (folder.resolve() == where or where in folder.resolve().parents):
            raise VcriticError(
                f"--output {output} would replace {flag} {folder}, which this run reads",
                hint="write the new training output to another folder",
            )


def _create_output(output: Path) -> None:
    """A fresh output folder, marked as vcritic's. An earlier output there was accepted by :func:`check_output`: its
    entries, all vcritic's, go; the folder itself stays (it holds the run's lock)."""
    output.mkdir(parents=True, exist_ok=True)
    for name in _written_by_vcritic(output):
        entry = output / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
    write_json_atomically(output / OWNED, {"written_by": "vcritic train", "files": []})


def _resume_config(output: Path, stage: int, model: str, data: Path, config: TrainConfig) -> TrainConfig:
    """The saved run's config; only keys that do not change the computation may differ."""
    run = json.loads((output / RUN).read_text())
    if run["stage"] != stage:
        raise VcriticError(f"{output} was a stage-{run['stage']} run, not stage {stage}", hint="use its --stage")
    # A local --model matches by folder (./m, m and /abs/m are one), as --data does.
    if _base_entry(run["model"]) != _base_entry(model) or Path(run["data"]) != data.resolve():
        raise VcriticError(
            f"{output} was started with --model {run['model']} --data {run['data']}",
            hint="resume with the same --model and --data",
        )
    saved = run["config"]
    changed = [k for k, v in config.to_dict().items() if saved.get(k) != v and k not in RESUMABLE_CHANGES]
    if changed:
        raise VcriticError(
            f"cannot resume with a different {', '.join(changed)}: the run was started with other values",
            hint=f"leave out --config and those flags to resume as the run was started (its settings are in "
            f"{output / RUN}); only {', '.join(RESUMABLE_CHANGES)} may change",
        )
    resumed = TrainConfig(**{**saved, **{k: getattr(config, k) for k in RESUMABLE_CHANGES}})
    done = read_position(checkpoint_dirs(output)[-1])["step"]
    if resumed.steps < done:
        # It used to re-export the newest checkpoint's weights silently, as if it were a run of --steps steps.
        raise VcriticError(
            f"--steps {resumed.steps} is below the {done} steps this run has already done",
            hint=f"give --steps {done} or more (or leave it out to finish the run as started), or start again "
            "with --overwrite",
        )
    return resumed


def resume_settings(
    output: str | Path, config: TrainConfig, given: Collection[str], *, whole: bool = False
) -> TrainConfig:
    """For ``--resume`` from the command line: the keys that may change on resume (steps, intervals) keep the
    saved run's values unless ``given`` (the flags the user typed) names them, so ``--resume`` alone does not
    jump to the preset's step count. With ``whole`` (no ``--config`` given) every key not ``given`` is the saved
    run's, so ``--resume`` alone finishes a run started with any ``--config``. Without a saved run, ``config``."""
    path = Path(output).expanduser() / RUN
    try:
        saved = json.loads(path.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return config
    if not isinstance(saved, dict):
        return config
    names = config.to_dict() if whole else RESUMABLE_CHANGES
    kept = {k: saved[k] for k in names if k not in given and k in saved}
    return TrainConfig(**{**config.to_dict(), **kept})


def _base_entry(model: str) -> str:
    """How ``vcritic.json`` names the base: a local folder by absolute path, presets and hub ids as given."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


@contextmanager
def _output_lock(output: Path):
    """The output folder locked for the whole run (:func:`vcritic.base.files.locked_folder`) by the launching process,
    rank 0, only: a second run writing the same folder is refused instead of mixing checkpoints and adapters."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    with locked_folder(output, flag="--output"):
        yield


def train(
    *,
    model: str,
    data: str | Path,
    output: str | Path,
    stage: int,
    config: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    revision: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    allow_stage_mismatch: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> Trained:
    """Train one stage and write the trained directory to ``output``, which is locked for the run.

    Data built for another stage (its ``data.json``) is refused unless ``allow_stage_mismatch``.
    ``on_event`` receives progress records (``{"event": "start" | "step" | "eval" | "checkpoint" | "done", ...}``)
    on the main process.
    """
    output = Path(output).expanduser()
    with _output_lock(output):
        return _train(
            model=model,
            data=data,
            output=output,
            stage=stage,
            config=config,
            resume=resume,
            overwrite=overwrite,
            revision=revision,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
            allow_stage_mismatch=allow_stage_mismatch,
            on_event=on_event,
        )


def _train(
    *,
    model: str,
    data: str | Path,
    output: Path,
    stage: int,
    config: TrainConfig,
    resume: bool,
    overwrite: bool,
    revision: str | None,
    device: str | None,
    dtype: str | None,
    trust_remote_code: bool,
    allow_pickle: bool,
    allow_stage_mismatch: bool,
    on_event: Callable[[dict[str, Any]], None] | None,
) -> Trained:
    import torch
    from accelerate.utils import DistributedDataParallelKwargs, GradientAccumulationPlugin, set_seed

    from vcritic.inference.critic import Encoder, Family
    from vcritic.inference.loading import load_model
    from vcritic.model.runtime import resolve_device, resolve_dtype
    from vcritic.training.collate import DialogueDataset, TrainingCollate
    from vcritic.training.model import answer_loss, attach_adapter, trainable_names
    from vcritic.training.sampler import TaskBatchSampler, lr_at

    data_dir = Path(data).expanduser()
    emit = on_event or (lambda record: None)
    check_launch_device(device)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if torch_dtype != torch.float32 and torch_device.type != "cuda":
        # Half precision trains as mixed precision (float32 trainable weights under autocast), which is CUDA-only here.
        raise VcriticError(
            f"--dtype {dtype} trains on CUDA only; on {torch_device.type} training runs in float32",
            hint="leave --dtype out, or use float32",
        )
    half = torch_dtype in (torch.bfloat16, torch.float16) and torch_device.type == "cuda"
    accelerator = _accelerator(
        torch_device,
        cpu=torch_device.type == "cpu",
        # LLaVA-style models read an inner layer of the vision tower, so a trained tower has weights that get no
        # gradient (post_layernorm, later layers); several processes (DDP) must be told, or the step fails.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=not config.freeze_vision)],
        mixed_precision=("bf16" if torch_dtype == torch.bfloat16 else "fp16") if half else "no",
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=config.grad_accum, sync_with_dataloader=False
        ),
        rng_types=[],  # the data order is a function of seed and epoch; nothing to synchronise
    )
    main = accelerator.is_main_process
    if accelerator.num_processes == 1 and accelerator.device != torch_device:
        raise VcriticError(
            f"accelerate already runs this process on {accelerator.device}, not {torch_device}",
            hint="train on one device per Python process (a new vcritic train run)",
        )
    if not resume:
        _check_not_inputs(output, model=model, data=data_dir)
    check_output(output, resume=resume, overwrite=overwrite)
    if resume:
        config = _resume_config(output, stage, model, data_dir, config)
    train_data = read_data(data_dir)
    built_for = train_data.info.get("stage")
    if built_for not in (None, stage) and not allow_stage_mismatch:
        # A stage trained on another stage's dialogues by mistake costs GPU-days: refused before the model loads.
        raise VcriticError(
            f"{data_dir} was built for stage {built_for} (its data.json), not stage {stage}",
            hint=f"train --stage {built_for} on it, build stage {stage} data with vcritic data build, or pass "
            "--allow-stage-mismatch if this is meant",
        )

    set_seed(config.seed)
    loaded = load_model(
        model,
        dtype=torch_dtype,
        revision=revision,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
        max_pixels=config.max_pixels,
        image_size=config.image_size,
    )
    family = Family.detect(loaded.model.config.model_type, loaded.processor)
    net = attach_adapter(loaded.model, config)
    # The output is created only once the data and model are known to load, so a typo costs no --overwrite.
    if main and not resume:
        _create_output(output)
        run = {"stage": stage, "model": _base_entry(model), "revision": revision, "data": str(data_dir.resolve())}
        write_json_atomically(output / RUN, {**run, "config": config.to_dict()})
    accelerator.wait_for_everyone()
    trained = trainable_names(net)
    encoder = Encoder(loaded.processor, family)
    dataset = DialogueDataset(train_data.dialogues, train_data.root, encoder)
    sampler = TaskBatchSampler([d.task for d in train_data.dialogues], config.batch_size, config.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=TrainingCollate(encoder),
        num_workers=config.workers,
        # Its own generator, so creating an iterator (at an epoch start, or mid-epoch on resume) does not draw
        # from the global RNG that dropout uses: a resumed run then repeats an uninterrupted one exactly.
        generator=torch.Generator().manual_seed(config.seed),
    )
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step, config) / config.lr)
    net, optimizer, loader = accelerator.prepare(net, optimizer, loader)
    # The scheduler steps once per optimizer step here, not once per process as a prepared one would; it is not
    # registered with accelerate, which unpickles registered objects with weights_only=False (see checkpoints).
    # Checkpoints hold the trained weights only; on resume the frozen rest comes from --model again.
    accelerator.register_save_state_pre_hook(lambda _models, weights, _dir: [_keep_only(w, trained) for w in weights])

    step = 0
    if resume:
        checkpoint = checkpoint_dirs(output)[-1]
        load_checkpoint(accelerator, checkpoint, scheduler, allow_pickle=allow_pickle)
        step = read_position(checkpoint)["step"]
        if main:
            _truncate_metrics(output / METRICS, step)
    per_epoch = len(loader)
    if per_epoch == 0:
        raise VcriticError("no training batch: every task has fewer dialogues than processes", hint="add data")
    micro = step * config.grad_accum
    epoch, skip = divmod(micro, per_epoch)
    n_processes = accelerator.num_processes
    samples_per_step = config.samples_per_step * n_processes
    if main:
        emit(
            {
                "event": "start",
                "step": step,
                "steps": config.steps,
                "dialogues": len(train_data.dialogues),
                "trainable": sum(p.numel() for p in params),
                "total": sum(p.numel() for p in net.parameters()),
                "processes": n_processes,
                "samples_per_step": samples_per_step,
                "device": str(accelerator.device),
                "resolution": str(loaded.resolution),
            }
        )
        if config.eval_every and not train_data.val:
            emit({"event": "warning", "message": f"{data_dir} has no val.jsonl dialogues: nothing to evaluate"})
        if built_for not in (None, stage):
            emit({"event": "warning", "message": f"{data_dir} was built for stage {built_for}, not {stage}"})

    def checkpoint() -> None:
        path = save_checkpoint(accelerator, output, step, {"epoch": epoch}, config.keep_checkpoints, scheduler)
        if main:
            emit({"event": "checkpoint", "step": step, "path": str(path)})

    net.train()
    losses: list = []  # this step's micro-batch losses (tensors, read out only when logged)
    started, start_step = time.monotonic(), step
    said_nothing_to_evaluate = False
    last_saved = step
    boundary = StepBoundary.take(accelerator)  # where the last completed step ended
    applying = False  # inside an optimizer step: the weights may be half updated, so nothing may be saved
    try:
        while step < config.steps:
            # accelerate's loader sets its own epoch counter on the sampler when iterated; keep both at ours.
            loader.set_epoch(epoch)
            sampler.set_epoch(epoch)
            batches = iter(accelerator.skip_first_batches(loader, skip) if skip else loader)
            while True:
                # Loading (a corrupt image found late) and the forward pass (out of memory) may fail on one
                # process only: each is followed by a point where all processes agree to go on or to stop.
                batch, error = _next_batch(batches)
                _agree(accelerator, error)
                if batch is None:
                    break
                with accelerator.accumulate(net):
                    loss, error = None, None
                    try:
                        loss = answer_loss(net, batch, torch_dtype)
                    except Exception as err:
                        error = err
                    _agree(accelerator, error)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and config.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(params, config.max_grad_norm)
                    applying = accelerator.sync_gradients
                    optimizer.step()
                    optimizer.zero_grad()
                losses.append(loss.detach().float())
                if not accelerator.sync_gradients:
                    continue
                scheduler.step()
                step += 1
                applying = False
                boundary = StepBoundary.take(accelerator)
                if step % config.log_every == 0 or step == config.steps:
                    mean = accelerator.reduce(torch.stack(losses).mean(), "mean").item()
                    elapsed = time.monotonic() - started
                    rate = (step - start_step) * samples_per_step / max(elapsed, 1e-9)
                    record = {
                        "step": step,
                        "loss": round(mean, 6),
                        "lr": lr_at(step - 1, config),
                        "samples_per_s": round(rate, 3),
                        "epoch": epoch,
                    }
                    if not math.isfinite(mean):
                        raise _NonFiniteLoss(f"the loss became {mean} at step {step}", hint="lower --lr")
                    if main:
                        _append_metrics(output / METRICS, record)
                        eta = (config.steps - step) * elapsed / (step - start_step)
                        emit({"event": "step", **record, "elapsed_s": elapsed, "eta_s": eta})
                    losses.clear()
                if config.eval_every and step % config.eval_every == 0 and train_data.val:
                    results = _evaluate(accelerator, net, loaded.processor, family, torch_dtype, train_data, config)
                    if main and results:
                        record = {"step": step, "eval": results}
                        _append_metrics(output / METRICS, record)
                        emit({"event": "eval", **record})
                    elif main and not said_nothing_to_evaluate:
                        # evaluate() measures pairs, rated quality dialogues and declines only; say so once.
                        said_nothing_to_evaluate = True
                        message = (
                            "val.jsonl has nothing to evaluate (relativity pairs, 3 or more quality dialogues "
                            "with a MOS, or declines)"
                        )
                        emit({"event": "warning", "message": message})
                if config.save_every and step % config.save_every == 0 and step < config.steps:
                    checkpoint()
                    last_saved = step
                if step >= config.steps:
                    break
            if step < config.steps:
                epoch, skip = epoch + 1, 0
    except (KeyboardInterrupt, Exception) as err:
        # Every process of a run gets Ctrl-C, and a failure that went through _agree() is known to all of them, so
        # they save together (saving is collective). Any other failure may be on one process only, while the
        # others wait inside a collective for it: saving there would hang, so the launcher ends the others.
        if isinstance(err, _NonFiniteLoss):
            raise  # NaN weights are worth no checkpoint; the newest one stays the newest
        together = isinstance(err, KeyboardInterrupt | _ProcessFailed) or accelerator.num_processes == 1
        cause = err.error if isinstance(err, _ProcessFailed) else err
        if not together or applying:
            saved, save_error = None, None  # half-updated weights: the newest checkpoint stays the newest
        elif step == last_saved and checkpoint_dirs(output):
            saved, save_error = step, None
        else:
            boundary.restore(accelerator)  # the RNG and micro-batch counter of the last completed step
            try:
                checkpoint()
                saved, save_error = step, None
            except Exception as failed:
                saved, save_error = None, failed
        raise _stopped(
            err, cause, step, config.steps, output, saved, save_error, applying=applying, together=together
        ) from (None if isinstance(err, KeyboardInterrupt) else cause)

    try:
        if step > last_saved or not checkpoint_dirs(output):
            checkpoint()
        accelerator.wait_for_everyone()
        if main:
            before = {entry.name for entry in output.iterdir()}
            try:
                _export(accelerator.unwrap_model(net), loaded, output, model, revision, stage, config, train_data)
            finally:  # also what a failed export left: vcritic's to replace
                _record_written(output, before)
    except Exception as err:  # a full disk at the very end
        newest = checkpoint_dirs(output)
        hint = "fix the cause, then start again with --overwrite"
        if newest:
            hint = f"fix the cause, then run the same command plus --resume (output: {output}): it continues from "
            hint += f"{newest[-1].name}" + (" and only writes the output" if newest[-1].name == f"step-{step}" else "")
        raise TrainingFailed(
            f"training did all {step} steps, but writing the result to {output} failed: {_describe(err)}", hint=hint
        ) from err
    if main:
        emit({"event": "done", "step": step, "output": str(output)})
    accelerator.wait_for_everyone()
    return Trained(output, accelerator.unwrap_model(net), loaded.processor, family, main)


def _accelerator(device, **kwargs):
    """An ``Accelerator`` on ``device``. On its own, a single process goes to accelerate's default device (``cuda``
    = GPU 0, whatever --device cuda:N says); accelerate reads ``ACCELERATE_TORCH_DEVICE`` when its process state is
    first created, so it is set for that moment. Several processes (accelerate launch) each take their own GPU."""
    import os

    import torch
    from accelerate import Accelerator

    from vcritic.model.compat import reset_accelerate_state
    from vcritic.pipeline.distributed import launched_processes

    if launched_processes() > 1:
        return Accelerator(**kwargs)
    # accelerate keeps one state per Python process: an earlier run here (notebook, tests) on another device would
    # otherwise decide where this one trains.
    reset_accelerate_state(device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # kernels and caches that use the current GPU follow too
    before = os.environ.get("ACCELERATE_TORCH_DEVICE")
    os.environ["ACCELERATE_TORCH_DEVICE"] = str(device)
    try:
        return Accelerator(**kwargs)
    finally:
        if before is None:
            del os.environ["ACCELERATE_TORCH_DEVICE"]
        else:
            os.environ["ACCELERATE_TORCH_DEVICE"] = before


def _keep_only(weights: dict, names: set[str]) -> None:
    # A model wrapped for several processes (DistributedDataParallel) prefixes its keys with "module.".
    for key in [k for k in weights if k.removeprefix("module.") not in names]:
        del weights[key]


def _evaluate(accelerator, net, processor, family, dtype, data: TrainData, config: TrainConfig) -> dict:
    """Held-out figures on the main process, read out through :class:`Critic` as ``compare``/``score`` do."""
    from vcritic.inference.critic import Critic
    from vcritic.training.evaluate import evaluate, evaluation_sample

    results: dict = {}
    error = None
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(net)
        model.eval()
        critic = Critic(model, processor, family=family, device=accelerator.device, dtype=dtype, source="training")
        try:
            with accelerator.autocast():
                held_out = evaluation_sample(data.val, config.eval_samples)
                results = evaluate(critic, held_out, data.root, batch_size=config.batch_size)
        except Exception as err:  # a held-out image gone bad, out of memory: the others hear of it below
            error = err
        model.train()
    _agree(accelerator, error)  # also where the other processes wait for the evaluation
    return results


def _append_metrics(path: Path, record: dict) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint being resumed, so the log reads as one run."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    write_text_atomically(path, "".join(line + "\n" for line in lines))


def _export(net, loaded, output: Path, model: str, revision, stage: int, config: TrainConfig, data: TrainData):
    """Write the trained directory: adapter, processor, earlier stages' adapters and ``vcritic.json``."""
    from peft import PeftModel

    net.save_pretrained(output, safe_serialization=True)
    loaded.processor.save_pretrained(output)
    adapters = ["."]
    base, base_revision = _base_entry(model), revision
    previous = loaded.manifest
    if not isinstance(net, PeftModel):
        # Trained in full (lora_r 0): a whole model, with every earlier stage already in its weights.
        base, base_revision, adapters = WHOLE_MODEL, None, []
    elif previous is not None:
        # Training on top of an earlier stage: keep its adapters here so this folder loads on its own.
        base, base_revision = manifest_base(previous)
        if base == WHOLE_MODEL:
            base, base_revision = str(loaded.directory.resolve()), None
        chain = manifest_adapters(previous)
        copied = []
        for i, name in enumerate(chain, 1):
            target = output / PREVIOUS / str(i)
            target.mkdir(parents=True, exist_ok=True)
            for file in ("adapter_config.json", "adapter_model.safetensors"):
                shutil.copy2(loaded.directory / name / file, target / file)
            copied.append(f"{PREVIOUS}/{i}")
        adapters = copied + adapters
    earlier = previous or {}
    trained_on = sorted(
        set(data.info.get("datasets") or [d.dataset for d in data.dialogues if d.dataset])
        | set(manifest_trained_on(earlier))
    )
    readout, trained_tasks = _judge_entries(model, previous, data)
    write_manifest(
        output,
        base_model=base,
        base_revision=base_revision,
        adapters=adapters,
        stages=[*manifest_stages(earlier), stage],
        data=data.root.resolve(),
        trained_on=trained_on,
        config=config.to_dict(),
        # What every image was resized to in training (and evaluation): score/compare/bench use it by default.
        resolution=loaded.resolution,
        # How scoring asks this model for MOS (vcritic.model.judges), and the tasks it was trained for: what it was
        # taught here, and what the judge it started from already knew.
        readout=readout,
        trained_tasks=trained_tasks,
    )


def _judge_entries(model: str, previous: dict | None, data: TrainData) -> tuple[str, list[str]]:
    """``vcritic.json``'s ``readout`` and ``trained_tasks``. Training teaches vcritic's prompts, so a run that taught
    MOS asks for it with them; one that did not keeps the read-out of the judge it started from (stage 2 on top
    of Q-ReAlign still reads MOS as Q-ReAlign does)."""
    from vcritic.model.judges import VCRITIC, judge_for
    from vcritic.readout.tasks import TASKS

    asked = {d.question for d in data.dialogues}
    taught = {task for task, questions in TASKS.items() if any(q.name in asked for q in questions)}
    start = judge_for(model, manifest=previous)
    readout = VCRITIC.name if "mos" in taught else start.spec.name
    known = taught | set(start.trained_tasks or ())
    return readout, [task for task in TASKS if task in known]


def _next_batch(batches) -> tuple[Any, BaseException | None]:
    """The next batch, or (None, None) at the end of the epoch, or (None, error) when loading it failed (the
    DataLoader opens the images: a file corrupted since the run started is found here)."""
    try:
        return next(batches), None
    except StopIteration:
        return None, None
    except Exception as err:
        return None, err


def _agree(accelerator, error: BaseException | None) -> None:
    """Raise :class:`_ProcessFailed` on every process if ``error`` is set on any of them. All processes call this
    at the same points (after loading a batch, after its forward pass), outside any other collective, so one that
    failed there does not leave the others waiting for it: they stop together and save together. One flag per
    process is gathered; a single process only checks its own."""
    if accelerator.num_processes == 1:
        if error is not None:
            raise _ProcessFailed(error, [0])
        return
    import torch

    flags = accelerator.gather(torch.tensor([float(error is not None)], device=accelerator.device))
    ranks = [rank for rank, flag in enumerate(flags.tolist()) if flag]
    if ranks:
        raise _ProcessFailed(error, ranks)


def _describe(error: BaseException) -> str:
    """One line for an error: vcritic's own message, or the exception's type and first line."""
    if isinstance(error, VcriticError):
        return error.message
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _stopped(
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
            ranks = err.ranks if isinstance(err, _ProcessFailed) else []
            failure = f"process {', '.join(map(str, ranks))} failed (its own message says why)"
        else:
            failure = _describe(cause)
        kind, what = TrainingFailed, f"training failed in step {step + 1} of {steps}: {failure}"
    if saved is not None:
        if kind is TrainingInterrupted:
            hint = f"continue with the same command plus --resume (output: {output})"
            return kind(f"{what}; checkpoint saved", hint=hint)
        return kind(what, hint=f"step {saved} is saved as checkpoints/step-{saved}; fix the cause, then {resume}")
    if applying:
        why = f"step {step + 1}'s update was half applied, so it was not saved"
    elif save_error is not None:
        why = f"saving a checkpoint failed too ({_describe(save_error)})"
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

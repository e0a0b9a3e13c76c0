"""``vcritic train``: one stage of the curriculum on ``accelerate``, written as a vcritic trained directory.

:func:`train` is the outline of a run; each part lives in its own module: the run folder's checks, marker, lock and
log (:mod:`~vcritic.training.run_folder`), ``run.json`` and resuming (:mod:`~vcritic.training.run_json`), the data
folder (:func:`vcritic.data.datadir.read_train_data`), the device and the prepared model
(:mod:`~vcritic.training.prepare`), the step loop (:mod:`~vcritic.training.steps`), checkpoints
(:mod:`~vcritic.training.checkpoints`), the trained directory (:mod:`~vcritic.training.export`) and how a stopped
run ends (:mod:`~vcritic.training.stopping`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcritic.data.datadir import TrainData, read_train_data
from vcritic.errors import VcriticError
from vcritic.training.checkpoints import checkpoint_dirs, load_checkpoint, read_position
from vcritic.training.config import TrainConfig
from vcritic.training.export import export
from vcritic.training.prepare import Prepared, device_and_dtype, prepare, training_accelerator
from vcritic.training.run_folder import (
    check_not_inputs,
    check_output,
    create_output,
    output_lock,
    recording_written,
    truncate_metrics,
)
from vcritic.training.run_json import resume_config, write_run
from vcritic.training.steps import StepLoop
from vcritic.training.stopping import result_failed


@dataclass
class Trained:
    """What a run produced: the output folder, and the trained model in memory (unmerged peft model)."""

    output: Path
    model: Any
    processor: Any
    family: Any
    main_process: bool = True  # False in the other processes of a multi-process run


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
    with output_lock(output):
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
    """One run, in order: refuse what can be refused before the model loads, load it, create the run folder, step,
    and write the trained directory."""
    from accelerate.utils import set_seed

    from vcritic.inference.encoder import Family
    from vcritic.inference.loading import load_model
    from vcritic.training.trainable import attach_adapter

    data_dir = Path(data).expanduser()
    emit = on_event or (lambda record: None)
    # Everything that can be refused is refused before the model loads.
    torch_device, torch_dtype = device_and_dtype(device, dtype)
    accelerator = training_accelerator(torch_device, torch_dtype, config)
    main = accelerator.is_main_process
    if not resume:
        check_not_inputs(output, model=model, data=data_dir)
    check_output(output, resume=resume, overwrite=overwrite)
    if resume:
        config = resume_config(output, stage, model, data_dir, config)
    train_data = read_train_data(data_dir)
    _check_stage(train_data, stage, allow_stage_mismatch)

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
        create_output(output)
        write_run(output, stage=stage, model=model, revision=revision, data=data_dir, config=config)
    accelerator.wait_for_everyone()
    prepared = prepare(accelerator, net, loaded.processor, family, train_data, config, torch_dtype)

    step = 0
    if resume:
        checkpoint = checkpoint_dirs(output)[-1]
        load_checkpoint(accelerator, checkpoint, prepared.scheduler, allow_pickle=allow_pickle)
        step = read_position(checkpoint)["step"]
        if main:
            truncate_metrics(output, step)
    steps = StepLoop(prepared, output, config, train_data, emit, step)
    if main:
        _announce(emit, steps, prepared, train_data, stage, loaded.resolution)
    steps.run()

    try:
        steps.save_last()
        accelerator.wait_for_everyone()
        if main:
            with recording_written(output):  # also what a failed export left: vcritic's to replace
                export(
                    accelerator.unwrap_model(prepared.net), loaded, output, model, revision, stage, config, train_data
                )
    except Exception as err:  # a full disk at the very end
        raise result_failed(err, steps.step, output) from err
    if main:
        emit({"event": "done", "step": steps.step, "output": str(output)})
    accelerator.wait_for_everyone()
    return Trained(output, accelerator.unwrap_model(prepared.net), loaded.processor, family, main)


def _check_stage(data: TrainData, stage: int, allow_stage_mismatch: bool) -> None:
    """A stage trained on another stage's dialogues by mistake costs GPU-days: refused before the model loads."""
    built_for = data.info.get("stage")
    if built_for not in (None, stage) and not allow_stage_mismatch:
        raise VcriticError(
            f"{data.root} was built for stage {built_for} (its data.json), not stage {stage}",
            hint=f"train --stage {built_for} on it, build stage {stage} data with vcritic data build, or pass "
            "--allow-stage-mismatch if this is meant",
        )


def _announce(emit, steps: StepLoop, prepared: Prepared, data: TrainData, stage: int, resolution) -> None:
    """The ``start`` record, and the warnings a run goes on with."""
    emit(
        {
            "event": "start",
            "step": steps.step,
            "steps": steps.config.steps,
            "dialogues": len(data.dialogues),
            "trainable": sum(p.numel() for p in prepared.params),
            "total": sum(p.numel() for p in prepared.net.parameters()),
            "processes": prepared.accelerator.num_processes,
            "samples_per_step": steps.samples_per_step,
            "device": str(prepared.accelerator.device),
            "resolution": str(resolution),
        }
    )
    if steps.config.eval_every and not data.val:
        emit({"event": "warning", "message": f"{data.root} has no val.jsonl dialogues: nothing to evaluate"})
    built_for = data.info.get("stage")
    if built_for not in (None, stage):
        emit({"event": "warning", "message": f"{data.root} was built for stage {built_for}, not {stage}"})

"""``vcritic train``: one stage of the VisualCritic curriculum, written as a trained directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vcritic.cli._options import (
    AllowPickleOpt,
    DeviceOpt,
    DtypeOpt,
    ImageSizeOpt,
    MaxPixelsOpt,
    RevisionOpt,
    TrustRemoteCodeOpt,
)

EPILOG = (
    "Config precedence: the 'paper' preset < --config (a preset name: paper, tiny; or a YAML file) < flags. "
    "OUT gets vcritic.json, the adapter (safetensors), metrics.jsonl and checkpoints/; score, compare and bench "
    "load it with --model OUT, at the resolution it was trained at (--max-pixels/--image-size, recorded in "
    "vcritic.json; a later stage inherits it). Several GPUs: accelerate launch -m vcritic train ... (each process "
    "takes its own GPU: choose them with CUDA_VISIBLE_DEVICES, not --device cuda:N). "
    "Data built for another stage (its data.json) is refused unless --allow-stage-mismatch. "
    "Exit status: 0 done; 1 bad input, or a failure mid-run (the last completed step is saved where possible: the "
    "message says which checkpoint --resume continues from); 130 interrupted (a checkpoint was saved; rerun with "
    "--resume)."
)


def _flag(name: str, kind, text: str):
    return Annotated[kind | None, typer.Option(name, help=text + " Overrides the config.", show_default=False)]


def train(
    stage: Annotated[int, typer.Option("--stage", min=1, max=3, help="Curriculum stage: 1, 2 or 3.")],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Base checkpoint (preset, hub repo id or folder), or the output of the previous stage.",
        ),
    ],
    data: Annotated[
        Path, typer.Option("--data", help="Folder written by 'vcritic data build' or 'vcritic data synth'.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the trained model and checkpoints.")],
    config: Annotated[
        str | None,
        typer.Option("--config", help="Preset name (paper, tiny) or YAML file. Default: paper.", show_default=False),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from the newest checkpoint in OUT, with the run's --steps and intervals unless given again "
            "(--steps below the steps done is refused).",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier training output in OUT.")] = False,
    allow_stage_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-stage-mismatch",
            help="Train on data built for another stage (its data.json says which); refused without this flag.",
        ),
    ] = False,
    steps: _flag("--steps", int, "Optimizer steps.") = None,
    lr: _flag("--lr", float, "Peak learning rate.") = None,
    batch_size: _flag("--batch-size", int, "Dialogues per forward pass, per process.") = None,
    grad_accum: _flag("--grad-accum", int, "Micro-batches per optimizer step.") = None,
    seed: _flag("--seed", int, "Seed for initialisation, data order and dropout.") = None,
    save_every: _flag("--save-every", int, "Steps between checkpoints.") = None,
    eval_every: _flag("--eval-every", int, "Steps between evaluations on DATA/val.jsonl (0: never).") = None,
    max_pixels: MaxPixelsOpt = None,
    image_size: ImageSizeOpt = None,
    revision: RevisionOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    trust_remote_code: TrustRemoteCodeOpt = False,
    allow_pickle: AllowPickleOpt = False,
) -> None:
    """Train one stage: LoRA on the language model plus a trainable projector (the paper's recipe by default).

    Stage N+1 continues from stage N: pass the stage-N output as --model.
    """
    from rich.markup import escape

    from vcritic.cli._output import make_progress, progress_enabled, stderr
    from vcritic.errors import UsageError
    from vcritic.training.config import ConfigValueError, explicit_keys, load_config
    from vcritic.training.run import train as run_training
    from vcritic.training.run_json import resume_settings

    overrides = dict(
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        seed=seed,
        save_every=save_every,
        eval_every=eval_every,
        max_pixels=max_pixels,
        image_size=image_size,
    )
    try:
        settings = load_config(stage, config, overrides)
    except ConfigValueError as err:  # a bad flag is a usage error; a bad value in a config file is not
        if overrides.get(err.key) is None:
            raise
        raise UsageError(f"--{err.key.replace('_', '-')} {overrides[err.key]}: {err.why}") from None
    if resume:
        settings = resume_settings(output, settings, explicit_keys(stage, config, overrides), whole=config is None)
    interactive = progress_enabled()
    progress = make_progress(interactive)
    task = None

    def on_event(record: dict) -> None:
        nonlocal task
        event = record["event"]
        if event == "start":
            stderr.print(
                f"Training stage {stage}: {record['dialogues']} dialogues, {record['trainable']:,} of "
                f"{record['total']:,} parameters trainable, {record['samples_per_step']} samples/step, "
                f"{record['processes']} process(es) on {record['device']}; images at {record['resolution']}"
            )
            task = progress.add_task("Training", total=record["steps"], completed=record["step"], rate="")
        elif event == "step":
            text = f"loss {record['loss']:.4f}  lr {record['lr']:.2e}  {record['samples_per_s']:.1f} samples/s"
            progress.update(task, completed=record["step"], rate=text)
            if not interactive:
                stderr.print(f"step {record['step']}/{settings.steps}  {text}  ETA {record['eta_s']:.0f} s")
        elif event == "eval":
            figures = ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record["eval"].items()
            )
            progress.console.print(f"step {record['step']}: validation {figures}")
        elif event == "warning":
            progress.console.print(f"[yellow]Warning:[/] {escape(record['message'])}", markup=True)
        elif event == "done":
            progress.update(task, completed=record["step"])

    with progress:
        trained = run_training(
            model=model,
            data=data,
            output=output,
            stage=stage,
            config=settings,
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
    out = trained.output
    if trained.main_process:
        stderr.print(f"Trained model written to {out}; use it with: vcritic score IMAGES --model {out}")

"""``OUT/run.json``: what a run was asked (model, revision, data, stage, config), and what ``--resume`` may change.

A resumed run must compute what the interrupted one would have: the same stage, ``--model``, ``--data`` and every
config key but :data:`RESUMABLE_CHANGES`, which only say how long to run and how often to log, save and evaluate.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from vcritic.base.files import write_json_atomically
from vcritic.base.limits import MAX_JSON_BYTES, check_input
from vcritic.errors import VcriticError
from vcritic.training.checkpoints import checkpoint_dirs, read_position
from vcritic.training.config import TrainConfig

RUN = "run.json"
# Keys that may change when a run is resumed: they do not alter what is computed up to the checkpoint.
RESUMABLE_CHANGES = ("steps", "log_every", "save_every", "eval_every", "keep_checkpoints", "eval_samples", "workers")


def base_entry(model: str) -> str:
    """How ``run.json`` and ``vcritic.json`` name the base: a local folder by absolute path, presets and hub ids as
    given."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def write_run(output: Path, *, stage: int, model: str, revision: str | None, data: Path, config: TrainConfig) -> None:
    run = {"stage": stage, "model": base_entry(model), "revision": revision, "data": str(data.resolve())}
    write_json_atomically(output / RUN, {**run, "config": config.to_dict()})


def read_run(path: Path) -> dict[str, Any]:
    """The ``run.json`` of an output folder, refused before reading when it is over the JSON bound."""
    check_input(path, MAX_JSON_BYTES, "a run.json")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        run = json.loads(text)
    except (ValueError, RecursionError):
        run = None
    if not isinstance(run, dict):
        raise VcriticError(f"{path} is not a run.json vcritic wrote", hint="start the run again with --overwrite")
    return run


def resume_config(output: Path, stage: int, model: str, data: Path, config: TrainConfig) -> TrainConfig:
    """The saved run's config; only keys that do not change the computation may differ."""
    run = read_run(output / RUN)
    if run["stage"] != stage:
        raise VcriticError(f"{output} was a stage-{run['stage']} run, not stage {stage}", hint="use its --stage")
    # A local --model matches by folder (./m, m and /abs/m are one), as --data does.
    if base_entry(run["model"]) != base_entry(model) or Path(run["data"]) != data.resolve():
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
        saved = read_run(path)["config"]
    except (OSError, KeyError):
        return config
    if not isinstance(saved, dict):
        return config
    names = config.to_dict() if whole else RESUMABLE_CHANGES
    kept = {k: saved[k] for k in names if k not in given and k in saved}
    return TrainConfig(**{**config.to_dict(), **kept})

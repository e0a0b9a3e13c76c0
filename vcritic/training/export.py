"""The trained directory a run ends with, written into its run folder: the peft adapter (safetensors), the processor
files, for a stage trained on top of an earlier one that stage's adapters under ``previous/``, and ``vcritic.json``
(:mod:`vcritic.model.vcritic_json`), which makes the folder load on its own."""

from __future__ import annotations

import shutil
from pathlib import Path

from vcritic.data.datadir import TrainData
from vcritic.model.vcritic_json import (
    WHOLE_MODEL,
    manifest_adapters,
    manifest_base,
    manifest_stages,
    manifest_trained_on,
    write_manifest,
)
from vcritic.training.config import TrainConfig
from vcritic.training.run_json import base_entry

PREVIOUS = "previous"


def export(net, loaded, output: Path, model: str, revision, stage: int, config: TrainConfig, data: TrainData):
    """Write the trained directory: adapter, processor, earlier stages' adapters and ``vcritic.json``."""
    from peft import PeftModel

    net.save_pretrained(output, safe_serialization=True)
    loaded.processor.save_pretrained(output)
    adapters = ["."]
    base, base_revision = base_entry(model), revision
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
    from vcritic.model.judges import judge_for
    from vcritic.model.readout_specs import VCRITIC
    from vcritic.readout.tasks import TASKS

    asked = {d.question for d in data.dialogues}
    taught = {task for task, questions in TASKS.items() if any(q.name in asked for q in questions)}
    start = judge_for(model, manifest=previous)
    readout = VCRITIC.name if "mos" in taught else start.spec.name
    known = taught | set(start.trained_tasks or ())
    return readout, [task for task in TASKS if task in known]

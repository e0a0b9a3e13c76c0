"""Training data and settings shared by the training tests: pairs of natural-picture crops, the fast wiring config."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter

from vcritic.data.dialogues import Dialogue, write_dialogues
from vcritic.readout.prompts import COMPARE, QUALITY
from vcritic.training.config import load_config


def write_pairs(folder: Path, sources, n: int = 8, *, quality: bool = False, size: int = 128) -> Path:
    """``n`` (pristine, degraded) pairs of ``size`` px crops of natural pictures, each in both orders, plus rating
    dialogues."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    degrade = [
        lambda im: im.filter(ImageFilter.GaussianBlur(4)),
        lambda im: ImageEnhance.Brightness(im).enhance(0.3),
        lambda im: ImageEnhance.Contrast(im).enhance(0.2),
        lambda im: Image.fromarray(
            np.clip(np.asarray(im) + rng.normal(0, 60, im.size[::-1] + (3,)), 0, 255).astype("uint8")
        ),
    ]
    dialogues = []
    for i in range(n):
        src = sources[i % len(sources)].convert("RGB")
        x, y = int(rng.integers(0, src.width - 128)), int(rng.integers(0, src.height - 128))
        good = src.crop((x, y, x + 128, y + 128))
        if size != 128:
            good = good.resize((size, size), Image.Resampling.BICUBIC)
        good.save(folder / f"{i}-good.png")
        degrade[i % len(degrade)](good).save(folder / f"{i}-bad.png")
        pair = (f"{i}-good.png", f"{i}-bad.png")
        dialogues.append(Dialogue("compare", "relativity", pair, COMPARE.instruction, COMPARE.answer(" first")))
        # The same words in both orders: only the images tell the two answers apart.
        dialogues.append(Dialogue("compare", "relativity", pair[::-1], COMPARE.instruction, COMPARE.answer(" second")))
        if quality:
            for name, word, mos in ((pair[0], " good", 80.0), (pair[1], " bad", 10.0)):
                dialogues.append(
                    Dialogue(
                        "quality", "quality", (name,), QUALITY.instruction, QUALITY.answer(word), meta={"mos": mos}
                    )
                )
    write_dialogues(folder / "dialogues.jsonl", dialogues)
    return folder


# The paper's wiring (LoRA on the language model, projector trained) plus a trainable output layer, at a constant
# learning rate with clipping. Measured: accuracy 1.0, swap flips 1.0 in ~30 s on one shared CPU core.
WIRING = {
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "train_modules": ["projector", "lm_head"],
    "freeze_vision": True,
    "lr": 3e-3,
    "min_lr": 3e-3,
    "warmup_steps": 0,
    "schedule": "constant",
    "max_grad_norm": 1.0,
    "batch_size": 16,
    "grad_accum": 1,
    "steps": 400,
    "save_every": 0,
    "log_every": 10,
}


def wiring_config(**overrides):
    """The fast wiring settings above, whatever the `tiny` preset (tuned for the learning benchmark) holds."""
    return load_config(1, "tiny", {**WIRING, "save_every": 0, "log_every": 1, **overrides})


def read_metrics(output: Path) -> list[dict]:
    """The rows of a training run's metrics.jsonl."""
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]

"""Periodic evaluation on held-out dialogues (``val.jsonl``), read out exactly as ``compare`` and ``score`` do."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vcritic.prompts import COMPARE, QUALITY
from vcritic.train.dialogues import Dialogue


def evaluate(critic, dialogues: Sequence[Dialogue], root: Path, batch_size: int = 8) -> dict[str, float]:
    """Pair accuracy on relativity dialogues; SRCC on quality dialogues whose meta has the MOS."""
    from vcritic.images import load_image
    from vcritic.metrics import pair_accuracy, srcc

    def path(name: str) -> Path:
        return Path(name) if Path(name).is_absolute() else root / name

    results: dict[str, float] = {}
    pairs = [d for d in dialogues if d.question == COMPARE.name and len(d.images) == 2]
    if pairs:
        images = [(load_image(path(d.images[0])), load_image(path(d.images[1]))) for d in pairs]
        p_first = critic.compare(images, batch_size=batch_size)
        first_better = [d.answer == COMPARE.answer(" first") for d in pairs]
        results["pair_accuracy"] = pair_accuracy(p_first, first_better)
        results["pairs"] = len(pairs)
    rated = [d for d in dialogues if d.question == QUALITY.name and "mos" in d.meta]
    if len(rated) >= 3:
        scores = critic.score([load_image(path(d.images[0])) for d in rated], batch_size=batch_size)
        results["srcc"] = srcc([s.mos for s in scores], [float(d.meta["mos"]) for d in rated])
        results["rated"] = len(rated)
    return results

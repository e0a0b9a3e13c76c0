"""Stage 1: relativity pairs (two images of one dataset, the answer names the better one).

Which image is better comes from MOS. A pair is skipped when the MOS difference is within rating noise:

- where the annotation file gives each image's rating spread (``Record.mos_std``: KonIQ-10k ``SD``, KADID-10k
  ``var``, AGIQA-3k ``std_quality``, on the 0-100 scale), when ``|MOS1 - MOS2| < NOISE_FACTOR * sqrt(sd1^2 + sd2^2)``.
  With 0.25 the gap is about 1.4 standard errors of the difference of two means of 30 ratings (KADID-10k's count;
  KonIQ-10k has more raters per image, AGIQA-3k fewer), so most kept pairs are ordered as a rerun of the study would
  order them. For KonIQ-10k's typical SD (15 points) that is a gap of 5.3 points.
- elsewhere, when ``|MOS1 - MOS2| < MIN_GAP`` (5 points on 0-100, about KonIQ-10k's typical threshold above).

Positions are balanced: exactly half the pairs show the better image first (one pair is dropped from an odd count).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcritic.data.dialogues import Dialogue
from vcritic.datasets import Record
from vcritic.readout.prompts import COMPARE

NOISE_FACTOR = 0.25
MIN_GAP = 5.0
FIRST, SECOND = " first", " second"


@dataclass(frozen=True)
class OrderedPair:
    """Two images, the better one first (before positions are assigned)."""

    better: str
    worse: str
    meta: dict[str, Any]


def min_gap(a: Record, b: Record) -> float:
    """The smallest MOS difference (0-100) at which the order of ``a`` and ``b`` counts as certain."""
    if a.mos_std is not None and b.mos_std is not None:
        return NOISE_FACTOR * math.hypot(a.mos_std, b.mos_std)
    return MIN_GAP


def _ordered(a: Record, b: Record, image: dict[Path, str]) -> OrderedPair | None:
    gap = abs(a.mos - b.mos)
    if gap < min_gap(a, b) or gap == 0:
        return None
    better, worse = (a, b) if a.mos > b.mos else (b, a)
    return OrderedPair(image[better.path], image[worse.path], {"mos": [round(better.mos, 4), round(worse.mos, 4)]})


def sample_pairs(records: Sequence[Record], n: int, rng: random.Random, image: dict[Path, str]) -> list[OrderedPair]:
    """Up to ``n`` distinct pairs of ``records`` whose order is outside rating noise, drawn at random (seeded).

    ``image`` maps each record's path to the string written in the dialogue. Small datasets are enumerated (every
    valid pair is a candidate); large ones are sampled with rejection, so memory stays O(n).
    """
    records = sorted(records, key=lambda r: str(r.path))
    count = len(records)
    total = count * (count - 1) // 2
    if total <= 4 * n:
        candidates = [
            pair for i in range(count) for j in range(i + 1, count) if (pair := _ordered(records[i], records[j], image))
        ]
        rng.shuffle(candidates)
        return candidates[:n]
    chosen: list[OrderedPair] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(20 * n):  # a dataset whose MOS barely differ runs out of valid pairs: stop instead of spinning
        if len(chosen) >= n:
            break
        i, j = sorted(rng.sample(range(count), 2))
        if (i, j) in seen:
            continue
        seen.add((i, j))
        pair = _ordered(records[i], records[j], image)
        if pair is not None:
            chosen.append(pair)
    return chosen


def pair_dialogues(pairs: Sequence[OrderedPair], rng: random.Random, dataset: str) -> list[Dialogue]:
    """One relativity dialogue per pair, exactly half with the better image first, instructions from the bank."""
    pairs = list(pairs)[: len(pairs) - len(pairs) % 2]
    firsts = [True] * (len(pairs) // 2) + [False] * (len(pairs) // 2)
    rng.shuffle(firsts)
    dialogues = []
    for pair, better_first in zip(pairs, firsts, strict=True):
        images = (pair.better, pair.worse) if better_first else (pair.worse, pair.better)
        mos = pair.meta.get("mos")
        meta = dict(pair.meta)
        if mos is not None and not better_first:
            meta["mos"] = list(reversed(mos))  # MOS in the order the images are shown
        dialogues.append(
            Dialogue(
                question=COMPARE.name,
                task="relativity",
                images=images,
                instruction=rng.choice(COMPARE.instructions),
                answer=COMPARE.answer(FIRST if better_first else SECOND),
                dataset=dataset,
                meta=meta,
            )
        )
    return dialogues

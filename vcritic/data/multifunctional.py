"""Stage 2: multifunctional dialogues (MOS, the five attributes, authenticity, qualitative descriptions).

Read-out answers are ``question.answer(level word)`` with the level whose value (100/75/50/25/0) is nearest the
0-100 score: boundaries at 87.5, 62.5, 37.5 and 12.5, a score exactly on a boundary takes the higher level. That is
the prefix and word the readout reads at scoring time, so what is taught is what is asked.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from vcritic.data.dialogues import Dialogue
from vcritic.datasets import ATTRIBUTES, Record
from vcritic.readout.prompts import ATTRIBUTE_QUESTIONS, AUTHENTICITY_QUESTION, DESCRIBE, LEVELS, QUALITY

PHOTO, GENERATED = " photographed", " generated"


def level_word(score: float) -> str:
    """The level word (with its leading space) nearest ``score`` on 0-100; ties go to the higher level."""
    return min(LEVELS, key=lambda level: (abs(score - level[1]), -level[1]))[0]


def quality_dialogues(records: Sequence[Record], rng: random.Random, image: dict) -> list[Dialogue]:
    return [
        Dialogue(
            question=QUALITY.name,
            task="quality",
            images=(image[r.path],),
            instruction=rng.choice(QUALITY.instructions),
            answer=QUALITY.answer(level_word(r.mos)),
            dataset=r.dataset,
            meta={"mos": round(r.mos, 4)},
        )
        for r in records
    ]


def attribute_dialogues(records: Sequence[Record], rng: random.Random, image: dict) -> list[Dialogue]:
    """One dialogue per image and attribute it has a score for (SPAQ: all five)."""
    dialogues = []
    for r in records:
        for name in ATTRIBUTES:
            if name not in r.attributes:
                continue
            question = ATTRIBUTE_QUESTIONS[name]
            dialogues.append(
                Dialogue(
                    question=question.name,
                    task="attributes",
                    images=(image[r.path],),
                    instruction=rng.choice(question.instructions),
                    answer=question.answer(level_word(r.attributes[name])),
                    dataset=r.dataset,
                    meta={name: round(r.attributes[name], 4)},
                )
            )
    return dialogues


def authenticity_dialogues(
    photos: Sequence[Record], generated: Sequence[Record], rng: random.Random, image: dict
) -> list[Dialogue]:
    """Balanced: as many photographs as AI-generated images (a seeded sample of the larger side), shuffled."""
    n = min(len(photos), len(generated))
    chosen = [(r, PHOTO) for r in rng.sample(list(photos), n)] + [
        (r, GENERATED) for r in rng.sample(list(generated), n)
    ]
    rng.shuffle(chosen)
    return [
        Dialogue(
            question=AUTHENTICITY_QUESTION.name,
            task="authenticity",
            images=(image[r.path],),
            instruction=rng.choice(AUTHENTICITY_QUESTION.instructions),
            answer=AUTHENTICITY_QUESTION.answer(word),
            dataset=r.dataset,
        )
        for r, word in chosen
    ]


# Descriptions: the paper had GPT-4 write them from the ground-truth numbers; here a template bank does, so every
# sentence follows from the numbers (the level of the MOS, and where SPAQ has them the best and worst attributes).
OPENINGS = (
    "Overall, the quality of this image is{level}.",
    "This image has{level} overall quality.",
    "The perceptual quality of this picture is{level} overall.",
    "Taken as a whole, this image's quality is{level}.",
)
VERDICTS = {
    " excellent": ("Viewers would find little to fault in it.", "It is a pleasure to look at."),
    " good": ("It is pleasant to look at, with only minor flaws.", "Its flaws are small and easy to overlook."),
    " fair": ("It is acceptable, although its flaws are noticeable.", "It is usable, but not clean."),
    " poor": ("Its flaws are obvious and spoil the viewing.", "Most viewers would find it unsatisfying."),
    " bad": ("It is severely degraded and hard to look at.", "Its defects dominate the picture."),
}
CONTRASTS = (
    "Its {best} is its strongest aspect, rated{best_level}, while its {worst} is the weakest, rated{worst_level}.",
    "The {best} stands out as{best_level}, but the {worst} is only{worst_level}.",
    "Rated by attribute, the {best} is{best_level} and the {worst} is{worst_level}.",
)
EVEN = (
    "Its brightness, colorfulness, contrast, noisiness and sharpness are all about equally rated.",
    "No single attribute stands out: they are rated about the same.",
)
EVEN_SPREAD = 10.0  # attributes within this many points of each other count as "about the same"


def describe(record: Record, rng: random.Random) -> str:
    """A description consistent with ``record``'s MOS level and, where present, its attribute scores."""
    level = level_word(record.mos)
    sentences = [rng.choice(OPENINGS).format(level=level), rng.choice(VERDICTS[level])]
    scores = {name: record.attributes[name] for name in ATTRIBUTES if name in record.attributes}
    if len(scores) >= 2:
        best = max(scores, key=lambda name: (scores[name], name))
        worst = min(scores, key=lambda name: (scores[name], name))
        if scores[best] - scores[worst] < EVEN_SPREAD:
            sentences.append(rng.choice(EVEN))
        else:
            sentences.append(
                rng.choice(CONTRASTS).format(
                    best=best, worst=worst, best_level=level_word(scores[best]), worst_level=level_word(scores[worst])
                )
            )
    return " ".join(sentences)


def description_dialogues(records: Sequence[Record], rng: random.Random, image: dict) -> list[Dialogue]:
    return [
        Dialogue(
            question=DESCRIBE.name,
            task="description",
            images=(image[r.path],),
            instruction=rng.choice(DESCRIBE.instructions),
            answer=describe(r, rng),
            dataset=r.dataset,
            meta={"mos": round(r.mos, 4), **{k: round(v, 4) for k, v in r.attributes.items()}},
        )
        for r in records
    ]

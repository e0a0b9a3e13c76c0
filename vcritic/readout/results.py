"""What the Python API returns: plain dataclasses, no tensors; and the rows the file pipeline
(:mod:`vcritic.pipeline.scoring`) yields, which are the same read-outs with the file they came from."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vcritic.readout.prompts import ATTRIBUTE_QUESTIONS, AUTHENTICITY_QUESTION, QUALITY

if TYPE_CHECKING:
    from vcritic.evaluation.calibration import Calibration
    from vcritic.readout.next_token import Readout
    from vcritic.readout.prompts import Question


@dataclass
class Score:
    """The read-outs asked for (None / empty where a task was not asked).

    ``mos`` and each attribute are 0-100 (higher = better quality / more of the attribute), with the spread of the
    model's level distribution in ``*_std``; ``p_ai_generated`` is P(AI-generated) in 0-1; ``probs`` is the MOS
    distribution over the level words. A reasoning judge's MOS is the number it wrote (no ``mos_std``, no
    ``probs``; None when its answer had none). ``untrained`` names the tasks read out here that the model was never
    trained for (e.g. ``("attributes",)`` from a quality-only judge): those numbers are zero-shot guesses.
    """

    mos: float | None = None
    mos_std: float | None = None
    attributes: dict[str, float] = field(default_factory=dict)
    attributes_std: dict[str, float] = field(default_factory=dict)
    p_ai_generated: float | None = None
    probs: dict[str, float] = field(default_factory=dict)
    untrained: tuple[str, ...] = ()


@dataclass(init=False)
class ScoreRow(Score):
    """A :class:`Score` of one file, as :func:`vcritic.pipeline.scoring.score_paths` yields it: with the file's path,
    and the
    reason it could not be scored (its read-outs then None). Built positionally as ``ScoreRow(path, mos, mos_std,
    error, attributes, attributes_std, p_ai_generated, untrained)``, as before it was a Score."""

    path: str = ""
    error: str | None = None

    def __init__(self, path: str, mos: float | None = None, mos_std: float | None = None, error: str | None = None,
                 attributes: dict[str, float] | None = None, attributes_std: dict[str, float] | None = None,
                 p_ai_generated: float | None = None, untrained: tuple[str, ...] = (), *,
                 probs: dict[str, float] | None = None):  # fmt: skip
        super().__init__(mos, mos_std, dict(attributes or {}), dict(attributes_std or {}), p_ai_generated,
                         dict(probs or {}), tuple(untrained))  # fmt: skip
        self.path, self.error = path, error

    def fields(
        self, tasks: Sequence[str] | None = None, calibration: Calibration | None = None, untrained: bool = False
    ) -> dict[str, str]:
        """This row as a scores-CSV row (with ``mos_calibrated`` and ``calibrated_scale`` given a ``calibration``;
        with the ``untrained`` column when asked)."""
        from vcritic.readout.schema import DEFAULT_TASKS, score_fields

        return score_fields(
            self.path,
            self.mos,
            self.mos_std,
            self.error,
            tasks=DEFAULT_TASKS if tasks is None else tasks,
            attributes=self.attributes,
            attributes_std=self.attributes_std,
            p_ai_generated=self.p_ai_generated,
            calibration=calibration,
            untrained=self.untrained if untrained else None,
        )


@dataclass
class CompareRow:
    """P(a better than b) for one pair of files, as :func:`vcritic.pipeline.scoring.compare_paths` yields it (averaged
    over
    both presentation orders), or the reason the pair could not be compared."""

    a: str
    b: str
    p_a_better: float | None
    error: str | None = None


@dataclass
class Comparison:
    """P(the first image has better quality than the second), symmetric: compare(b, a) = 1 - compare(a, b)."""

    p_a_better: float

    @property
    def better(self) -> str:
        """ "a", "b" or "tie" (:func:`vcritic.readout.schema.verdict`)."""
        from vcritic.readout.schema import verdict

        return verdict(self.p_a_better)


@dataclass
class RankedImage:
    """One image of a :class:`Ranking`: its place (1 = best), its Bradley-Terry strength (logit scale, mean 0 over
    the set: P(i better than j) = sigmoid(strength_i - strength_j)) with standard error, the number of comparisons
    it was in and its mean P(better) over them."""

    rank: int
    index: int  # position in the list of images given
    path: str | None  # None for a PIL image
    strength: float
    se: float
    comparisons: int
    win_rate: float


@dataclass
class Ranking:
    """Images best first, and every comparison the ranking was fitted from as ``(index a, index b, P(a better))``."""

    images: list[RankedImage]
    pairs: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def order(self) -> list[int]:
        """Input positions, best first."""
        return [image.index for image in self.images]


@dataclass
class Description:
    """The model's written assessment of an image, with the numbers read out beside it (None if none asked)."""

    text: str
    score: Score | None = None


def scores_from_readouts(
    questions: Sequence[Question], readouts: Sequence[Readout], untrained: tuple[str, ...] = ()
) -> list[Score]:
    """One :class:`Score` per image from the per-question readouts of a batch; ``untrained``: the asked tasks the
    model was not trained for (see :meth:`vcritic.inference.critic.Critic.untrained`)."""
    count = len(readouts[0].mean)
    scores = [Score(untrained=tuple(untrained)) for _ in range(count)]
    for question, readout in zip(questions, readouts, strict=True):
        means, stds = _values(readout.mean.tolist()), _values(readout.std.tolist())
        for i, score in enumerate(scores):
            if question.name == QUALITY.name:
                score.mos, score.mos_std = means[i], stds[i]
                words = [w.strip() for w in question.words]
                score.probs = dict(zip(words, readout.probs[i].tolist(), strict=True))
            elif question.name in ATTRIBUTE_QUESTIONS:
                score.attributes[question.name] = means[i]
                score.attributes_std[question.name] = stds[i]
            elif question.name == AUTHENTICITY_QUESTION.name:
                score.p_ai_generated = means[i]
    return scores


def _values(numbers: list[float]) -> list[float | None]:
    """NaN (a generated answer without a number, or its missing spread) as None."""
    return [None if math.isnan(x) else x for x in numbers]

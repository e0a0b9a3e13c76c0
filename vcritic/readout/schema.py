"""The columns of every CSV vcritic writes, and what their numbers mean: one place for the writers (``score``,
``compare``, ``rank``, ``bench``, the split files) and the readers (``bench --predictions``, ``report``, ``rank
--from-pairs``), and how a path in a CSV is read.

Plain data, string formatting and path joining only: the CLI, the report and the benchmark import it without
pulling in the scoring engine, a model library or a dataset loader.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vcritic.evaluation.calibration import Calibration

# The five attribute indicators of the paper (SPAQ carries their ground truth), in the paper's order.
ATTRIBUTES = ("brightness", "colorfulness", "contrast", "noisiness", "sharpness")
MOS_SCALE = "0-100"  # what every mos and attribute column means: 0 lowest, 100 highest
DEFAULT_TASKS = ("mos",)  # what `vcritic score` reads out unless --tasks says otherwise

# -- scores CSV (`vcritic score`, and the first columns of bench's predictions.csv) -------------------------------
READOUTS = ("mos", *ATTRIBUTES, "p_ai_generated")  # the score columns a report can sort by, in that preference


def score_columns(
    tasks: Sequence[str] = DEFAULT_TASKS, *, calibrated: bool = False, untrained: bool = False
) -> list[str]:
    """The columns of a scores CSV for ``tasks``; `vcritic bench --predictions` reads any of these layouts.

    ``calibrated`` (``score --calibration``) adds ``mos_calibrated``, the MOS mapped onto a dataset's own scale, and
    ``calibrated_scale``, which scale that is (see :mod:`vcritic.evaluation.calibration`). ``untrained`` adds
    ``untrained``:
    the asked tasks the judge was never trained for, comma-separated (e.g. ``attributes,authenticity`` from a
    quality-only judge), so those numbers never pass for trained ones."""
    columns = ["path"]
    if "mos" in tasks:
        columns += ["mos", "mos_std"]
        if calibrated:
            columns += ["mos_calibrated", "calibrated_scale"]
    if "attributes" in tasks:
        columns += [name for attribute in ATTRIBUTES for name in (attribute, f"{attribute}_std")]
    if "authenticity" in tasks:
        columns += ["p_ai_generated"]
    if untrained:
        columns += ["untrained"]
    return [*columns, "scale", "error"]


def format_number(value: float | None, digits: int = 4) -> str:
    """A CSV cell: empty for a missing or non-finite value."""
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def score_fields(
    path: str,
    mos: float | None,
    mos_std: float | None,
    error: str | None,
    *,
    tasks: Sequence[str] = DEFAULT_TASKS,
    attributes: dict[str, float] | None = None,
    attributes_std: dict[str, float] | None = None,
    p_ai_generated: float | None = None,
    calibration: Calibration | None = None,
    untrained: Sequence[str] | None = None,
) -> dict[str, str]:
    """One row of a scores CSV, as ``vcritic score --tasks ...`` writes it (the columns of :func:`score_columns`;
    with a ``calibration``, those of ``calibrated=True``; with ``untrained`` given, even empty, ``untrained=True``)."""
    attributes, attributes_std = attributes or {}, attributes_std or {}
    row = {"path": path, "mos": format_number(mos), "mos_std": format_number(mos_std)}
    if calibration is not None:
        row["mos_calibrated"] = format_number(calibration.apply(mos))
        row["calibrated_scale"] = calibration.label
    for attribute in ATTRIBUTES:
        row[attribute] = format_number(attributes.get(attribute))
        row[f"{attribute}_std"] = format_number(attributes_std.get(attribute))
    row.update(p_ai_generated=format_number(p_ai_generated, 6), scale=MOS_SCALE, error=error or "")
    row["untrained"] = ",".join(untrained or ())
    columns = score_columns(tasks, calibrated=calibration is not None, untrained=untrained is not None)
    return {column: row[column] for column in columns}


def resolve_relative(path: str, base: Path) -> str:
    """A path from a CSV file, taken relative to the CSV's own folder unless absolute."""
    candidate = Path(path).expanduser()
    return os.fspath(candidate if candidate.is_absolute() else base / candidate)


# -- pairs CSV (`vcritic compare --pairs`, `rank --pairs-out`, read back by `rank --from-pairs`) -------------------
PAIR_INPUT_COLUMNS = ("a", "b")  # what a pairs file must have; compare keeps any other columns it has
COMPARE_COLUMNS = ("p_a_better", "better", "error")  # what compare adds to them
PAIR_COLUMNS = [*PAIR_INPUT_COLUMNS, *COMPARE_COLUMNS]  # rank's --pairs-out: a pairs file compare would write
PAIR_DIGITS = 6  # p_a_better in rank's --pairs-out: a refit with --from-pairs gives the ranking's 4 decimals back

# The one definition of a tie, for the ``better`` column, Comparison.better and pair accuracy: probabilities come from
# a softmax, so P is 0.5 exactly only by chance; a tie is no preference at the 4 decimals vcritic prints.
TIE_TOLERANCE = 5e-5


def verdict(p_a_better: float) -> str:
    """The ``better`` column: "a", "b", or "tie" where P(a better) is within :data:`TIE_TOLERANCE` of 0.5."""
    if abs(p_a_better - 0.5) < TIE_TOLERANCE:
        return "tie"
    return "a" if p_a_better > 0.5 else "b"


# -- ranking CSV (`vcritic rank`) ----------------------------------------------------------------------------------
RANK_COLUMNS = ["rank", "path", "strength", "se", "comparisons", "win_rate", "error"]
RANK_REQUIRED = tuple(RANK_COLUMNS[:4])  # how `vcritic report` recognises a ranking CSV

# -- `vcritic bench --out` files -----------------------------------------------------------------------------------
BENCH_FIELDS = ["dataset", "image", "split", "mos_true"]  # predictions.csv: after the scores CSV's columns
BENCH_PAIR_COLUMNS = ["a", "b", "mos_true_a", "mos_true_b", "mos_a", "mos_b", "p_a_better"]  # pairs.csv


def prediction_columns(tasks: Sequence[str]) -> list[str]:
    """The header of predictions.csv: the columns ``vcritic score --tasks ...`` writes, then :data:`BENCH_FIELDS`."""
    return [*score_columns(tasks), *BENCH_FIELDS]


# -- split files (`bench` and `data build`: which image is in which split) ----------------------------------------
def split_columns(with_ref_id: bool) -> list[str]:
    """``image,split``, and ``ref_id`` where the records have reference images."""
    return ["image", "split", *(["ref_id"] if with_ref_id else [])]

"""IQA metrics as small pure functions on sequences of numbers.

Correlations return NaN where they are undefined (fewer than two items, or a constant input), never raise.
PLCC after the logistic fit follows the VQEG practice: predictions are first mapped through the 4-parameter logistic
``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2`` fitted to the ground truth by least squares, which removes
a monotonic non-linearity between the two scales before measuring linear correlation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

NAN = float("nan")


def _pair(pred: Sequence[float], true: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"expected two 1-D sequences of the same length, got {x.shape} and {y.shape}")
    return x, y


def _defined(x: np.ndarray, y: np.ndarray) -> bool:
    return len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0


def srcc(pred: Sequence[float], true: Sequence[float]) -> float:
    """Spearman rank-order correlation."""
    from scipy.stats import spearmanr

    x, y = _pair(pred, true)
    return float(spearmanr(x, y).statistic) if _defined(x, y) else NAN


def krcc(pred: Sequence[float], true: Sequence[float]) -> float:
    """Kendall rank-order correlation (tau-b)."""
    from scipy.stats import kendalltau

    x, y = _pair(pred, true)
    return float(kendalltau(x, y).statistic) if _defined(x, y) else NAN


def plcc(pred: Sequence[float], true: Sequence[float]) -> float:
    """Pearson linear correlation of the raw predictions."""
    x, y = _pair(pred, true)
    return float(np.corrcoef(x, y)[0, 1]) if _defined(x, y) else NAN


def logistic4(x, b1: float, b2: float, b3: float, b4: float):
    """The standard 4-parameter logistic (VQEG): from b2 (low end) to b1 (high end), centred at b3, width |b4|."""
    z = np.clip(-(np.asarray(x, dtype=float) - b3) / max(abs(b4), 1e-12), -500.0, 500.0)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def fit_logistic(pred: Sequence[float], true: Sequence[float]) -> tuple[float, float, float, float] | None:
    """Least-squares parameters (b1, b2, b3, b4) of :func:`logistic4` mapping ``pred`` onto ``true``.

    None when the fit is undefined (fewer than 4 items, constant input) or does not converge.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    x, y = _pair(pred, true)
    if len(x) < 4 or not _defined(x, y):
        return None
    start = [float(y.max()), float(y.min()), float(np.mean(x)), float(np.std(x)) / 4 or 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(logistic4, x, y, p0=start, maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    if not np.all(np.isfinite(params)):
        return None
    return tuple(float(p) for p in params)  # type: ignore[return-value]


def plcc_logistic(pred: Sequence[float], true: Sequence[float]) -> float:
    """PLCC after mapping the predictions through the fitted 4-parameter logistic.

    Falls back to the raw PLCC where the fit fails (:func:`fit_logistic` returns None then).
    """
    x, y = _pair(pred, true)
    params = fit_logistic(x, y)
    if params is None:
        return plcc(x, y)
    fitted = logistic4(x, *params)
    return plcc(fitted, y) if np.ptp(fitted) > 0 else plcc(x, y)


def accuracy(pred: Sequence[object], true: Sequence[object]) -> float:
    """Share of items where the prediction equals the label."""
    if len(pred) != len(true):
        raise ValueError(f"expected sequences of the same length, got {len(pred)} and {len(true)}")
    if not pred:
        return NAN
    return sum(p == t for p, t in zip(pred, true, strict=True)) / len(pred)


def pair_accuracy(p_first_better: Sequence[float], first_is_better: Sequence[bool]) -> float:
    """Share of pairs ranked right from P(first is better); a tie (:func:`vcritic.readout.schema.verdict`) counts as
    half
    right."""
    from vcritic.readout.schema import verdict

    if len(p_first_better) != len(first_is_better):
        raise ValueError("expected one label per pair")
    if not p_first_better:
        return NAN
    score = 0.0
    for p, truth in zip(p_first_better, first_is_better, strict=True):
        better = verdict(p)
        if better == "tie":
            score += 0.5
        elif (better == "a") == truth:
            score += 1.0
    return score / len(p_first_better)


def score_pair_accuracy(first: Sequence[float], second: Sequence[float], first_is_better: Sequence[bool]) -> float:
    """Pair ranking from two predicted scores (the paper's "A-B scores"): first better when its score is higher."""
    p = [0.5 if a == b else float(a > b) for a, b in zip(first, second, strict=True)]
    return pair_accuracy(p, first_is_better)


def correlations(pred: Sequence[float], true: Sequence[float]) -> dict[str, float]:
    """SRCC, PLCC (raw and after the logistic fit) and KRCC in one dict."""
    return {
        "srcc": srcc(pred, true),
        "plcc": plcc(pred, true),
        "plcc_logistic": plcc_logistic(pred, true),
        "krcc": krcc(pred, true),
    }


def finite_or_none(value: float | None) -> float | None:
    """NaN/inf as None, for JSON."""
    return None if value is None or not math.isfinite(value) else value

"""Metric functions against scipy on known inputs; the logistic fit recovers a known curve."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from vcritic.evaluation import metrics


@pytest.fixture
def noisy():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 100, 200)
    pred = 0.6 * true + rng.normal(0, 15, 200)
    return pred, true


def test_correlations_match_scipy(noisy):
    pred, true = noisy
    assert metrics.srcc(pred, true) == pytest.approx(stats.spearmanr(pred, true).statistic, abs=1e-12)
    assert metrics.plcc(pred, true) == pytest.approx(stats.pearsonr(pred, true).statistic, abs=1e-12)
    assert metrics.krcc(pred, true) == pytest.approx(stats.kendalltau(pred, true).statistic, abs=1e-12)


def test_known_values():
    assert metrics.srcc([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert metrics.srcc([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert metrics.plcc([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    # one swapped pair out of six: tau = (5 - 1) / 6
    assert metrics.krcc([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    # monotone but not linear: rank correlation is perfect, linear correlation is not
    x = np.arange(1, 11, dtype=float)
    assert metrics.srcc(x, np.exp(x)) == pytest.approx(1.0)
    assert metrics.plcc(x, np.exp(x)) < 0.8


def test_undefined_correlations_are_nan_not_errors():
    assert math.isnan(metrics.srcc([1.0], [2.0]))
    assert math.isnan(metrics.plcc([5, 5, 5], [1, 2, 3]))
    assert math.isnan(metrics.krcc([1, 2, 3], [7, 7, 7]))
    assert math.isnan(metrics.plcc_logistic([5, 5, 5, 5], [1, 2, 3, 4]))
    assert metrics.fit_logistic([1, 2, 3], [1, 2, 3]) is None  # too few points for 4 parameters
    with pytest.raises(ValueError):
        metrics.srcc([1, 2], [1, 2, 3])


def test_logistic_fit_recovers_a_known_curve():
    x = np.linspace(0, 100, 120)
    truth = (90.0, 10.0, 55.0, 8.0)
    y = metrics.logistic4(x, *truth)
    params = metrics.fit_logistic(x, y)
    assert params is not None
    b1, b2, b3, b4 = params
    assert (b1, b2, b3, abs(b4)) == pytest.approx(truth, rel=1e-3)
    # a sigmoid relation: PLCC after the fit is ~1 although the raw PLCC is lower
    assert metrics.plcc_logistic(x, y) == pytest.approx(1.0, abs=1e-6)
    assert metrics.plcc(x, y) < 0.97


def test_logistic_fit_with_noise_improves_plcc(noisy):
    pred, true = noisy
    squashed = 100 / (1 + np.exp(-(pred - 30) / 6))  # a monotone distortion of the predictions
    assert metrics.plcc_logistic(squashed, true) > metrics.plcc(squashed, true)
    assert metrics.srcc(squashed, true) == pytest.approx(metrics.srcc(pred, true))


def test_logistic4_is_the_vqeg_form():
    # f(b3) is the midpoint; the sign of b4 does not matter (|b4|)
    assert metrics.logistic4(50.0, 100.0, 0.0, 50.0, 10.0) == pytest.approx(50.0)
    assert metrics.logistic4(50.0, 100.0, 0.0, 50.0, -10.0) == pytest.approx(50.0)
    assert metrics.logistic4(1e6, 100.0, 0.0, 50.0, 10.0) == pytest.approx(100.0)  # no overflow
    assert metrics.logistic4(-1e6, 100.0, 0.0, 50.0, 10.0) == pytest.approx(0.0)


def test_accuracy_and_pair_accuracy():
    assert metrics.accuracy([True, False, True, True], [True, True, True, False]) == 0.5
    assert math.isnan(metrics.accuracy([], []))
    assert metrics.pair_accuracy([0.9, 0.2, 0.5, 0.7], [True, False, True, False]) == pytest.approx(2.5 / 4)
    assert metrics.score_pair_accuracy([80, 10, 50], [20, 30, 50], [True, False, False]) == pytest.approx(2.5 / 3)
    assert math.isnan(metrics.pair_accuracy([], []))


def test_correlations_dict_and_json_helper(noisy):
    pred, true = noisy
    result = metrics.correlations(pred, true)
    assert set(result) == {"srcc", "plcc", "plcc_logistic", "krcc"}
    assert metrics.finite_or_none(float("nan")) is None
    assert metrics.finite_or_none(0.5) == 0.5

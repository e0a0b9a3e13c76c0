"""Bradley-Terry fitting and the pair design (vcritic.readout.ranking): pure numpy/scipy, checked against
simulations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit
from scipy.stats import spearmanr

from vcritic.errors import VcriticError
from vcritic.readout.ranking import all_pairs, design_pairs, fit_bradley_terry


def true_strengths(n: int, seed: int) -> np.ndarray:
    s = np.random.default_rng(seed).normal(size=n)
    return s - s.mean()  # Bradley-Terry only knows differences; the fit is centred the same way


def bt_probabilities(s: np.ndarray, pairs) -> np.ndarray:
    a = np.array(pairs)
    return expit(s[a[:, 0]] - s[a[:, 1]])


def test_noise_free_probabilities_give_the_strengths_back():
    s = true_strengths(60, seed=1)
    pairs = design_pairs(60, per_image=8, seed=2)
    fit = fit_bradley_terry(60, pairs, bt_probabilities(s, pairs))
    assert spearmanr(fit.strength, s).statistic > 0.999  # the prior shrinks a little unevenly: one close pair may swap
    assert abs(fit.strength.mean()) < 1e-12
    # Only the wide prior stands between the fit and the truth: a shrink of a few percent, nothing else.
    assert np.abs(fit.strength - s).max() < 0.1
    assert 0.95 < np.polyfit(s, fit.strength, 1)[0] < 1.0


def test_noisy_soft_labels_rank_close_to_the_truth():
    rng = np.random.default_rng(3)
    s = true_strengths(200, seed=4)
    pairs = design_pairs(200, per_image=8, seed=5)
    a = np.array(pairs)
    p = expit(s[a[:, 0]] - s[a[:, 1]] + rng.normal(0, 0.5, len(pairs)))  # an oracle that is noisy per pair
    fit = fit_bradley_terry(200, pairs, p)
    assert spearmanr(fit.strength, s).statistic > 0.95


def test_standard_errors_cover_the_truth_at_the_nominal_rate():
    # One binary judgement per pair drawn from a known BT model: what the inverse-Hessian SEs assume.
    n, replicates = 30, 60
    s = true_strengths(n, seed=6)
    pairs = all_pairs(n)
    truth = bt_probabilities(s, pairs)
    rng = np.random.default_rng(7)
    inside_95 = inside_68 = 0
    for _ in range(replicates):
        outcomes = (rng.random(len(pairs)) < truth).astype(float)
        fit = fit_bradley_terry(n, pairs, outcomes)
        z = np.abs(fit.strength - s) / fit.se
        inside_95 += int((z < 1.96).sum())
        inside_68 += int((z < 1.0).sum())
    assert 0.92 <= inside_95 / (n * replicates) <= 0.98
    assert 0.62 <= inside_68 / (n * replicates) <= 0.74


def test_order_of_a_pair_and_the_direction_of_preference_are_symmetric():
    s = true_strengths(12, seed=8)
    pairs = design_pairs(12, per_image=4, seed=9)
    p = bt_probabilities(s, pairs)
    fit = fit_bradley_terry(12, pairs, p)
    swapped = fit_bradley_terry(12, [(j, i) for i, j in pairs], 1 - p)
    np.testing.assert_allclose(swapped.strength, fit.strength, atol=1e-8)
    np.testing.assert_allclose(swapped.se, fit.se, atol=1e-8)
    reversed_ = fit_bradley_terry(12, pairs, 1 - p)  # every preference the other way round
    np.testing.assert_allclose(reversed_.strength, -fit.strength, atol=1e-8)
    np.testing.assert_allclose(reversed_.se, fit.se, atol=1e-8)
    np.testing.assert_allclose(reversed_.win_rate, 1 - fit.win_rate, atol=1e-12)
    undecided = fit_bradley_terry(12, pairs, np.full(len(pairs), 0.5))
    np.testing.assert_allclose(undecided.strength, 0, atol=1e-10)


def test_prior_keeps_a_perfectly_separated_set_finite_and_ordered():
    # Image 0 beats everyone, 1 beats all but 0, ...: without the prior the likelihood grows without bound.
    n = 6
    pairs = all_pairs(n)
    fit = fit_bradley_terry(n, pairs, np.ones(len(pairs)))
    assert np.all(np.isfinite(fit.strength)) and np.all(np.isfinite(fit.se))
    assert list(fit.order()) == list(range(n))
    assert np.all(np.diff(fit.strength) < 0)
    assert np.abs(fit.strength).max() < 20
    np.testing.assert_allclose(fit.win_rate, [(n - 1 - i) / (n - 1) for i in range(n)])
    wider = fit_bradley_terry(n, pairs, np.ones(len(pairs)), prior_sd=50.0)
    assert np.abs(wider.strength).max() > np.abs(fit.strength).max()  # the prior, not the optimiser, bounds it


def test_disconnected_comparisons_are_refused_naming_the_images():
    labels = ["a.png", "b.png", "c.png", "d.png", "e.png"]
    pairs = [(0, 1), (1, 2), (3, 4)]
    with pytest.raises(VcriticError) as caught:
        fit_bradley_terry(5, pairs, [0.6, 0.7, 0.2], labels=labels)
    message = caught.value.message
    assert "2 groups" in message and "d.png, e.png" in message and "a.png" not in message
    assert "\n" not in message and caught.value.hint
    with pytest.raises(VcriticError, match="outside the largest group: #2"):
        fit_bradley_terry(3, [(0, 1)], [0.5])  # an image in no comparison at all


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_probabilities_outside_0_1_are_refused(bad):
    with pytest.raises(VcriticError, match="comparison 2 has P"):
        fit_bradley_terry(3, [(0, 1), (1, 2)], [0.3, bad])


def test_self_comparison_is_refused():
    with pytest.raises(VcriticError, match="with itself"):
        fit_bradley_terry(2, [(0, 1), (1, 1)], [0.3, 0.5])


@pytest.mark.parametrize(("n", "k"), [(101, 2), (101, 3), (101, 8), (40, 16), (1000, 4)])
def test_random_design_is_connected_and_every_image_meets_k_others(n, k):
    pairs = design_pairs(n, per_image=k, seed=11)
    a = np.array(pairs)
    assert np.all(a[:, 0] != a[:, 1])
    assert len({frozenset(pair) for pair in pairs}) == len(pairs)  # no pair twice, in either order
    degree = np.bincount(a.ravel(), minlength=n)
    assert degree.min() >= k
    assert len(pairs) <= n * k / 2 + n  # about n*K/2: the top-ups for duplicates are few
    graph = coo_matrix((np.ones(len(pairs)), (a[:, 0], a[:, 1])), shape=(n, n))
    assert connected_components(graph, directed=False)[0] == 1
    assert 0.35 < (a[:, 0] < a[:, 1]).mean() < 0.65  # which image comes first is mixed


def test_design_is_fixed_by_the_seed():
    assert design_pairs(50, per_image=4, seed=1) == design_pairs(50, per_image=4, seed=1)
    assert design_pairs(50, per_image=4, seed=1) != design_pairs(50, per_image=4, seed=2)


def test_small_sets_compare_every_pair():
    assert sorted(map(sorted, design_pairs(17, per_image=8))) == [list(p) for p in all_pairs(17)]
    assert len(design_pairs(18, per_image=8)) < len(all_pairs(18))  # past 2K+1 the random design is cheaper
    assert len(design_pairs(40, per_image=4, every_pair=True)) == len(all_pairs(40))
    assert design_pairs(2) == [(0, 1)]


def test_design_refuses_too_few_images_or_partners():
    with pytest.raises(VcriticError, match="at least 2 images"):
        design_pairs(1)
    with pytest.raises(VcriticError, match="--per-image 1"):
        design_pairs(10, per_image=1)


def test_hard_labels_on_a_large_design_converge():
    # 0/1 outcomes (one vote per pair) on 1000 images: where Newton-CG's own flag cries "precision loss" at optima.
    rng = np.random.default_rng(12)
    s = true_strengths(1000, seed=13)
    pairs = design_pairs(1000, per_image=8, seed=14)
    outcomes = (rng.random(len(pairs)) < bt_probabilities(s, pairs)).astype(float)
    fit = fit_bradley_terry(1000, pairs, outcomes)
    assert spearmanr(fit.strength, s).statistic > 0.65  # eight coin flips per image say only so much
    assert 0.90 < np.mean(np.abs(fit.strength - s) < 1.96 * fit.se) < 0.99

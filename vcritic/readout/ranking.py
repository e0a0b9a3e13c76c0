"""Ranking a set of images from pairwise preferences: the pair design and a Bradley-Terry fit (numpy/scipy only,
imported when a fit or design runs, so the command line's defaults read from here cost nothing).

Bradley-Terry gives each image a strength ``s`` with P(i better than j) = sigmoid(s_i - s_j). Each comparison's
probability is used as a soft label: the fit maximises ``sum p log sigmoid(d) + (1 - p) log sigmoid(-d)`` over the
pairs, plus a Gaussian prior N(0, PRIOR_SD^2) on every strength. Without the prior a set where one image wins every
comparison outright has no finite solution; with it the maximum is unique and finite, and the strengths come out
with mean 0 (the prior's gradient is the only part that does not cancel pairwise).

Standard errors are the square roots of the diagonal of the inverse Hessian of the negative log posterior. They
treat each comparison as one independent binary judgement made with the fitted probability, so they measure how well
the design pins a strength down; a model's judgements of the same images are not independent, so read them as
relative precision, not as a calibrated interval of the model's error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vcritic.errors import VcriticError

if TYPE_CHECKING:
    import numpy as np

    from vcritic.readout.results import Ranking

# Logit units. Wide: on a K = 8 design it pulls strengths towards 0 by about 2% (noise-free simulation; at most
# near-equal neighbours swap); yet an image that wins every comparison outright gets a finite strength (about 5.5
# at the top of a set of 5 ranked without a single doubt), not one that runs off to infinity.
PRIOR_SD = 10.0
# Each image meets this many others in the random design (benchmarks/rank.py: on a simulated oracle the rank
# correlation to the truth gains little beyond it, while the model's work grows linearly with K).
DEFAULT_PER_IMAGE = 8
# Exact standard errors invert the Hessian (n x n); above this many images the diagonal approximation is used.
EXACT_SE_MAX = 4000


@dataclass
class BradleyTerryFit:
    """Strengths (logit scale, mean 0) and their standard errors, per image index; ``comparisons`` counts the pairs
    each image was in and ``wins`` sums its soft wins (P(it was better)) over them."""

    strength: np.ndarray
    se: np.ndarray
    comparisons: np.ndarray
    wins: np.ndarray

    @property
    def win_rate(self) -> np.ndarray:
        import numpy as np

        return np.divide(self.wins, self.comparisons, out=np.full(len(self.wins), np.nan), where=self.comparisons > 0)

    def order(self) -> np.ndarray:
        """Image indices best first (ties by index, so the order is deterministic)."""
        import numpy as np

        return np.lexsort((np.arange(len(self.strength)), -self.strength))


def all_pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def uses_all_pairs(n: int, per_image: int = DEFAULT_PER_IMAGE) -> bool:
    """Whether the design compares every pair: when that costs at most twice the random design (n <= 2K + 1), every
    image then gets all the information there is for little more model time."""
    return n <= 2 * per_image + 1


def design_pairs(
    n: int, *, per_image: int | None = None, every_pair: bool | None = None, seed: int = 0
) -> list[tuple[int, int]]:
    """Which pairs of ``n`` images to compare.

    Every pair when ``every_pair`` is set, or (``None``) when :func:`uses_all_pairs`. Otherwise a random design
    seeded by ``seed``: ``per_image // 2`` random cycles through all images (the first one connects the graph), a
    random matching when ``per_image`` is odd, then extra random partners for any image that duplicate edges left
    short, so every image meets at least ``per_image`` distinct others, about ``n * per_image / 2`` pairs in all.
    Each pair's order is random too, so no image is always shown first.
    """
    import numpy as np

    k = DEFAULT_PER_IMAGE if per_image is None else per_image
    if n < 2:
        raise VcriticError(f"ranking needs at least 2 images, got {n}")
    if k < 2:
        raise VcriticError(
            f"--per-image {k} cannot connect the images", hint="use at least 2 (each image must meet 2 others)"
        )
    if every_pair or (every_pair is None and uses_all_pairs(n, k)) or k >= n - 1:
        return all_pairs(n)
    rng = np.random.default_rng(seed)
    edges: set[tuple[int, int]] = set()

    def add(i: int, j: int) -> None:
        edges.add((min(i, j), max(i, j)))

    for _ in range(k // 2):
        cycle = rng.permutation(n)
        for i, j in zip(cycle, np.roll(cycle, -1), strict=True):
            add(int(i), int(j))
    if k % 2:
        order = rng.permutation(n)
        for i, j in zip(order[0::2], order[1::2], strict=False):
            add(int(i), int(j))
    degree = np.zeros(n, dtype=int)
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for i, j in edges:
        degree[i] += 1
        degree[j] += 1
        neighbours[i].add(j)
        neighbours[j].add(i)
    for i in map(int, rng.permutation(n)):
        while degree[i] < k:
            # The least-compared image not yet met (random among equals), so the extra pairs spread evenly.
            free = np.array([j for j in range(n) if j != i and j not in neighbours[i]])
            least = free[degree[free] == degree[free].min()]
            j = int(rng.choice(least))
            add(i, j)
            neighbours[i].add(j)
            neighbours[j].add(i)
            degree[i] += 1
            degree[j] += 1
    pairs = sorted(edges)
    flip = rng.random(len(pairs)) < 0.5
    return [(j, i) if swap else (i, j) for (i, j), swap in zip(pairs, flip, strict=True)]


def _name_some(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_connected(n: int, first: np.ndarray, second: np.ndarray, labels: Sequence[str] | None = None) -> None:
    """Refuse comparisons that leave the images in separate groups: strengths in different groups have no common
    scale. The message names the images outside the largest group."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(n, n))
    count, group = connected_components(graph, directed=False)
    if count <= 1:
        return
    largest = np.bincount(group).argmax()
    outside = [labels[i] if labels is not None else f"#{i}" for i in np.flatnonzero(group != largest)]
    raise VcriticError(
        f"the comparisons split the images into {count} groups that are never compared with each other; "
        f"{len(outside)} image(s) are outside the largest group: {_name_some(outside)}",
        hint="compare across the groups (more pairs, or --per-image higher) so every image is linked to the rest",
    )


def fit_bradley_terry(
    n: int,
    pairs: Sequence[tuple[int, int]],
    probabilities: Sequence[float],
    *,
    labels: Sequence[str] | None = None,
    prior_sd: float = PRIOR_SD,
) -> BradleyTerryFit:
    """Maximum a posteriori Bradley-Terry strengths of ``n`` images from soft outcomes: ``probabilities[k]`` is
    P(``pairs[k][0]`` better than ``pairs[k][1]``). A pair may appear more than once (each is one comparison).
    ``labels`` name the images in error messages."""
    import numpy as np
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    if n < 2:
        raise VcriticError(f"ranking needs at least 2 images, got {n}")
    first = np.array([i for i, _ in pairs], dtype=np.intp)
    second = np.array([j for _, j in pairs], dtype=np.intp)
    p = np.asarray(probabilities, dtype=float)
    if len(p) != len(first):
        raise ValueError(f"{len(first)} pairs but {len(p)} probabilities")
    bad = np.flatnonzero(~((p >= 0) & (p <= 1)))  # catches NaN too
    if len(bad):
        raise VcriticError(f"comparison {bad[0] + 1} has P = {p[bad[0]]}, not a probability in 0-1")
    if len(first) and (first.min() < 0 or max(first.max(), second.max()) >= n):
        raise ValueError(f"pair indices must be in 0..{n - 1}")
    same = np.flatnonzero(first == second)
    if len(same):
        raise VcriticError(f"comparison {same[0] + 1} compares an image with itself")
    check_connected(n, first, second, labels)
    precision = 1.0 / prior_sd**2

    def objective(s):
        d = s[first] - s[second]
        loss = -(p * log_expit(d) + (1 - p) * log_expit(-d)).sum() + 0.5 * precision * s @ s
        residual = expit(d) - p  # d(loss)/d(d) per comparison
        grad = np.bincount(first, residual, n) - np.bincount(second, residual, n) + precision * s
        return loss, grad

    def hessp(s, v):
        q = expit(s[first] - s[second])
        dv = q * (1 - q) * (v[first] - v[second])
        return np.bincount(first, dv, n) - np.bincount(second, dv, n) + precision * v

    # The objective is strictly convex (the prior), so Newton-CG from 0 reaches the one optimum in a few steps.
    result = minimize(objective, np.zeros(n), jac=True, hessp=hessp, method="Newton-CG", options={"xtol": 1e-10})
    # Judged by the gradient, not result.success: with the tight xtol, Newton-CG reports "precision loss" at optima
    # whose gradient is already ~1e-8.
    worst = float(np.abs(objective(result.x)[1]).max())
    if not worst < 1e-5:
        raise VcriticError(f"the Bradley-Terry fit did not converge (largest gradient {worst:.2g})")
    strength = result.x - result.x.mean()
    return BradleyTerryFit(
        strength=strength,
        se=_standard_errors(n, first, second, strength, precision),
        comparisons=np.bincount(first, minlength=n) + np.bincount(second, minlength=n),
        wins=np.bincount(first, p, n) + np.bincount(second, 1 - p, n),
    )


def _standard_errors(n: int, first: np.ndarray, second: np.ndarray, strength: np.ndarray, precision: float):
    import numpy as np
    from scipy.special import expit

    q = expit(strength[first] - strength[second])
    w = q * (1 - q)
    diagonal = np.bincount(first, w, n) + np.bincount(second, w, n) + precision
    if n > EXACT_SE_MAX:
        # Each strength's precision with the others held fixed: a lower bound on the exact SE (on random designs of
        # 1000 images about 8% low at K = 8, 4% at K = 16, half at K = 2), without an n x n inverse.
        return 1.0 / np.sqrt(diagonal)
    from scipy.linalg import cho_factor, cho_solve

    hessian = np.diag(diagonal)
    np.add.at(hessian, (first, second), -w)
    np.add.at(hessian, (second, first), -w)
    covariance = cho_solve(cho_factor(hessian), np.eye(n))
    # The strengths reported are centred (s - mean s); the overall level, which only the prior pins down, is no
    # part of their uncertainty: the variance of s_i - mean(s).
    row_mean = covariance.mean(axis=1)
    return np.sqrt(np.diag(covariance) - 2 * row_mean + row_mean.mean())


def to_ranking(fit: BradleyTerryFit, paths: Sequence[str | None], pairs, probabilities) -> Ranking:
    """The fit as the Python API's :class:`~vcritic.readout.results.Ranking` (images best first)."""
    from vcritic.readout.results import RankedImage, Ranking

    win_rate = fit.win_rate
    images = [
        RankedImage(
            place,
            int(i),
            paths[i],
            float(fit.strength[i]),
            float(fit.se[i]),
            int(fit.comparisons[i]),
            float(win_rate[i]),
        )  # fmt: skip
        for place, i in enumerate(fit.order(), start=1)
    ]
    return Ranking(images, [(int(a), int(b), float(p)) for (a, b), p in zip(pairs, probabilities, strict=True)])

"""How many comparisons per image does ``vcritic rank`` need? A simulated Bradley-Terry oracle, no model.

Each image gets a true strength drawn from N(0, spread^2); the oracle answers a pair (i, j) with
P = sigmoid(s_i - s_j + e), e ~ N(0, noise^2) drawn afresh for every pair, which stands in for a model whose
pairwise judgement is right on average but wrong by a random amount on each pair. The pairs are exactly those
``vcritic rank`` picks (``vcritic.readout.ranking.design_pairs``: each image against K others, or every pair), the fit
is
``vcritic.readout.ranking.fit_bradley_terry``. Printed per set size n and K: the pairs compared (the model runs two
prompts
per pair), the Spearman rank correlation (SRCC) of the fitted strengths to the truth (mean and spread over the
repeats), the share of images whose 95% interval (strength +- 1.96 se) holds the truth, and the fit time.

    python benchmarks/rank.py                                   # n = 100 and 1000, K = 2, 4, 8, 16 and all pairs
    python benchmarks/rank.py --sizes 5000 --per-image 4 8 --noise 1.0 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.special import expit
from scipy.stats import spearmanr

from vcritic.readout.ranking import design_pairs, fit_bradley_terry


def simulate(n: int, k: int | None, *, spread: float, noise: float, seed: int) -> dict[str, float]:
    """One run: a fresh truth, the design for (n, K) (``None``: every pair), the oracle's answers and the fit."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, spread, n)
    truth -= truth.mean()
    pairs = design_pairs(n, per_image=k or 2, every_pair=k is None, seed=seed)
    a = np.array(pairs)
    p = expit(truth[a[:, 0]] - truth[a[:, 1]] + rng.normal(0.0, noise, len(pairs)))
    started = time.perf_counter()
    fit = fit_bradley_terry(n, pairs, p)
    seconds = time.perf_counter() - started
    covered = np.mean(np.abs(fit.strength - truth) <= 1.96 * fit.se)
    return {"pairs": len(pairs), "srcc": spearmanr(fit.strength, truth).statistic, "covered": covered,
            "seconds": seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="images per set")
    parser.add_argument("--per-image", type=int, nargs="+", default=[2, 4, 8, 16], help="K values (all pairs too)")
    parser.add_argument("--spread", type=float, default=1.0, help="SD of the true strengths (logit units)")
    parser.add_argument("--noise", type=float, default=0.5, help="SD of the oracle's per-pair logit error")
    parser.add_argument("--repeats", type=int, default=5, help="runs per row (fresh truth, design and noise)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"Bradley-Terry oracle: strengths ~ N(0, {args.spread:g}^2), per-pair logit noise ~ N(0, {args.noise:g}^2),"
          f" {args.repeats} repeats per row")  # fmt: skip
    print(f"{'n':>6} {'K':>5} {'pairs':>8} {'prompts':>8} {'SRCC mean':>9} {'sd':>6} {'95% cover':>9} {'fit s':>7}")
    for n in args.sizes:
        for k in [*args.per_image, None]:
            runs = [simulate(n, k, spread=args.spread, noise=args.noise, seed=args.seed + r)
                    for r in range(args.repeats)]  # fmt: skip
            srcc = np.array([run["srcc"] for run in runs])
            pairs = runs[0]["pairs"]
            label = "all" if k is None else str(k)
            print(f"{n:>6} {label:>5} {pairs:>8} {2 * pairs:>8} {srcc.mean():>9.4f} {srcc.std():>6.4f} "
                  f"{np.mean([run['covered'] for run in runs]):>9.3f} "
                  f"{np.mean([run['seconds'] for run in runs]):>7.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

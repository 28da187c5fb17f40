"""Statistics for comparing schedules over the handful of seeds a grid affords.

Comparisons are paired by seed: every schedule of a seed starts from the same initial weights
and sees the same data order, so the per-seed difference removes most seed-to-seed noise.
On the per-seed relative differences ``paired_comparison`` gives the mean, a paired t 95 %
interval (none for one seed), the exact two-sided sign-flip permutation p-value and the
seeds an equally noisy repeat would need for 80 % power; ``holm`` adjusts the p-values of one
comparison table; ``verdict`` turns an adjusted p into a word by the rule in
``VERDICT_RULE``. The distributions and tests are scipy.stats'.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.80
MAX_POWER_SEEDS = 1000
EXACT_UP_TO = 16  # seeds: up to 2**16 sign flips are enumerated; beyond, 9999 random ones


def min_seeds(alpha: float = ALPHA, comparisons: int = 1) -> int:
    """Fewest seeds at which a two-sided sign-flip test can reach ``alpha`` after a Holm
    adjustment over ``comparisons``: with n seeds the smallest possible p (every difference of
    one sign) is 2 / 2**n, and Holm rejects nothing unless the smallest p times the number of
    comparisons is at most ``alpha``."""
    n = 1
    while comparisons * 2 / 2**n > alpha:
        n += 1
    return n


VERDICT_RULE = (
    f"A comparison reads \"better\" (lower MAE) or \"worse\" when its Holm-adjusted exact "
    f"sign-flip p is at most {ALPHA}, otherwise \"no detectable difference\"; with fewer than "
    f"{min_seeds()} seeds it reads \"too few seeds to tell\" (even {min_seeds() - 1} seeds that "
    f"all agree give p = {2 / 2 ** (min_seeds() - 1):.4g} > {ALPHA}), and so it does in a table "
    f"of m comparisons with too few seeds for m × the smallest possible p to reach {ALPHA} "
    f"(Holm can then reject nothing: {min_seeds(comparisons=5)} seeds for 5 comparisons, "
    f"{min_seeds(comparisons=10)} for 10); with one seed \"one seed: no test\".")


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def t_interval(values, level: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval of the mean; None for fewer than two values."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return None
    mean = float(v.mean())
    if np.ptp(v) == 0:
        return mean, mean
    lo, hi = stats.t.interval(level, len(v) - 1, loc=mean, scale=stats.sem(v))
    return float(lo), float(hi)


def sign_flip_p(values) -> tuple[float, bool]:
    """Two-sided sign-flip permutation p-value of the mean, and whether it is exact (all
    2**n sign patterns, for n <= 16) rather than from 9999 random patterns (seeded)."""
    v = np.asarray(values, dtype=float)
    exact = len(v) <= EXACT_UP_TO
    res = stats.permutation_test(
        (v,), np.mean, permutation_type="samples", vectorized=True, alternative="two-sided",
        n_resamples=2 ** len(v) if exact else 9999, rng=np.random.default_rng(0))
    return float(min(1.0, res.pvalue)), exact


def seeds_for_power(mean: float, sd: float, alpha: float = ALPHA, power: float = POWER,
                    max_n: int = MAX_POWER_SEEDS) -> int | None:
    """Fewest seeds (2..max_n) at which a two-sided paired t test at ``alpha`` detects a mean
    difference ``mean`` with spread ``sd`` with probability ``power`` (noncentral t); None
    when even ``max_n`` seeds are not enough."""
    ns = np.arange(2, max_n + 1)
    crit = stats.t.ppf(1 - alpha / 2, ns - 1)
    nc = abs(mean) / sd * np.sqrt(ns)
    # P(T > crit) + P(T < -crit); the lower tail as sf at -nc (by symmetry), which stays
    # finite where nct.cdf far in the tail returns nan.
    reach = stats.nct.sf(crit, ns - 1, nc) + stats.nct.sf(crit, ns - 1, -nc)
    hit = np.nonzero(reach >= power)[0]
    return int(ns[hit[0]]) if len(hit) else None


def paired_comparison(candidate: dict[int, float], reference: dict[int, float]
                      ) -> dict | None:
    """Per-seed ``(candidate - reference) / reference`` over the seeds both have.

    Returns ``mean``, the paired t 95 % interval ``lo``/``hi`` (None for one seed), the
    two-sided sign-flip ``p`` (None for one seed) and whether it is ``exact``, ``wins`` (seeds
    where the candidate is lower), ``n``, and ``n_for_power`` (seeds for 80 % power at the
    observed mean and spread; None for one seed, a zero spread, or beyond 1000 seeds, the
    last flagged by ``power_beyond_max``). None when no seed is shared.
    """
    seeds = sorted(set(candidate) & set(reference))
    if not seeds:
        return None
    rel = np.array([(candidate[s] - reference[s]) / reference[s] for s in seeds])
    n = len(rel)
    mean = float(rel.mean())
    interval = t_interval(rel)
    p, exact = sign_flip_p(rel) if n >= 2 else (None, True)
    sd = float(rel.std(ddof=1)) if n >= 2 else 0.0
    n_power = seeds_for_power(mean, sd) if n >= 2 and sd > 0 else None
    return {"mean": mean,
            "lo": interval[0] if interval else None, "hi": interval[1] if interval else None,
            "p": p, "exact": exact, "wins": int((rel < 0).sum()), "n": n,
            "n_for_power": n_power,
            "power_beyond_max": n >= 2 and sd > 0 and n_power is None}


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values over the non-None entries, in the input order."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for k, i in enumerate(idx):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        out[i] = running
    return out


def verdict(mean: float, p_adjusted: float | None, n: int, alpha: float = ALPHA,
            comparisons: int = 1) -> str:
    """The verdict word of one paired comparison (``VERDICT_RULE``); ``mean`` is the
    candidate's mean relative change, so negative (lower MAE) is better, and ``comparisons``
    the number of tests its p was Holm-adjusted over."""
    if n <= 1:
        return "one seed: no test"
    if n < min_seeds(alpha, comparisons):
        return "too few seeds to tell"
    if p_adjusted is not None and p_adjusted <= alpha and not math.isnan(p_adjusted):
        return "better" if mean < 0 else "worse"
    return "no detectable difference"


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    """First epoch (1-based count) at which ``curve`` is at or below ``target``."""
    for i, v in enumerate(curve):
        if v <= target:
            return i + 1
    return None

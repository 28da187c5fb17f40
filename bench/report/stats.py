"""Small, explicit statistics for comparing schedules over seeds.

Comparisons are paired by seed: every schedule of a seed starts from the same initial weights
and sees the same data order, so the per-seed difference removes most seed-to-seed noise.
With the handful of seeds a grid affords, the bootstrap interval is coarse; the report says
how many seeds each number rests on.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_REPS = 10_000


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def bootstrap_ci(values, level: float = 0.95, reps: int = BOOTSTRAP_REPS,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; fixed seed so reports are reproducible."""
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(reps, len(v)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_relative_change(candidate: dict[int, float], reference: dict[int, float]
                           ) -> dict[str, float] | None:
    """Per-seed ``(candidate - reference) / reference`` over the seeds both have.

    Returns mean, bootstrap 95 % interval, wins (seeds where the candidate is lower) and the
    number of pairs; None when no seed is shared.
    """
    seeds = sorted(set(candidate) & set(reference))
    if not seeds:
        return None
    rel = np.array([(candidate[s] - reference[s]) / reference[s] for s in seeds])
    lo, hi = bootstrap_ci(rel)
    return {"mean": float(rel.mean()), "lo": lo, "hi": hi,
            "wins": int((rel < 0).sum()), "n": len(seeds)}


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    """First epoch (1-based count) at which ``curve`` is at or below ``target``."""
    for i, v in enumerate(curve):
        if v <= target:
            return i + 1
    return None

"""The small statistics of the report, against direct numpy computations."""

from __future__ import annotations

import numpy as np
import pytest

from bench.report.stats import bootstrap_ci, epochs_to_reach, mean_std, paired_relative_change


def test_mean_std_uses_the_sample_deviation():
    assert mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, np.std([1, 2, 4], ddof=1)))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible():
    v = [0.1, -0.2, 0.05, 0.3, 0.0]
    lo, hi = bootstrap_ci(v)
    assert lo < np.mean(v) < hi and min(v) <= lo and hi <= max(v)
    assert bootstrap_ci(v) == (lo, hi)


def test_paired_relative_change_pairs_by_seed():
    cand = {0: 9.0, 1: 10.0, 2: 12.0, 7: 1.0}
    ref = {0: 10.0, 1: 10.0, 2: 10.0}
    out = paired_relative_change(cand, ref)
    rel = np.array([-0.1, 0.0, 0.2])
    assert out["n"] == 3 and out["wins"] == 1
    assert out["mean"] == pytest.approx(rel.mean())
    assert paired_relative_change({5: 1.0}, ref) is None


@pytest.mark.parametrize("curve,target,expected", [
    ([5, 4, 3, 2], 3, 3), ([5, 4, 3, 2], 5, 1), ([5, 4], 1, None), ([], 1, None)])
def test_epochs_to_reach_counts_from_one(curve, target, expected):
    assert epochs_to_reach(curve, target) == expected

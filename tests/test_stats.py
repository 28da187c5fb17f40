"""The statistics of the report, against scipy and hand computations on known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench.report.stats import (
    VERDICT_RULE,
    epochs_to_reach,
    holm,
    mean_std,
    min_seeds,
    paired_comparison,
    seeds_for_power,
    sign_flip_p,
    t_interval,
    verdict,
)


def pairs(diffs, ref: float = 10.0) -> tuple[dict[int, float], dict[int, float]]:
    """Candidate and reference per seed whose relative differences are ``diffs``."""
    return ({s: ref * (1 + d) for s, d in enumerate(diffs)}, {s: ref for s in range(len(diffs))})


def test_mean_std_uses_the_sample_deviation():
    assert mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, np.std([1, 2, 4], ddof=1)))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_t_interval_of_three_differences_by_hand_and_by_scipy():
    d = [-0.02, -0.05, 0.01]
    m, s = np.mean(d), np.std(d, ddof=1)
    half = 4.302652729911275 * s / math.sqrt(3)  # t_{0.975, 2} = 4.303
    lo, hi = t_interval(d)
    assert (lo, hi) == pytest.approx((m - half, m + half), rel=1e-9)
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((ci.low, ci.high), rel=1e-9)
    out = paired_comparison(*pairs(d))
    assert (out["lo"], out["hi"]) == pytest.approx((m - half, m + half), rel=1e-9)
    # far wider than the 10-resample bootstrap it replaces could ever be
    assert out["lo"] < min(d) and out["hi"] > max(d)


def test_exact_sign_flip_p_of_five_positive_differences_is_one_sixteenth():
    p, exact = sign_flip_p([0.01, 0.02, 0.03, 0.04, 0.05])
    assert exact and p == pytest.approx(1 / 16, abs=1e-12)  # 2 of 32 sign patterns
    out = paired_comparison(*pairs([0.01, 0.02, 0.03, 0.04, 0.05]))
    assert out["p"] == pytest.approx(0.0625, abs=1e-12) and out["wins"] == 0
    assert sign_flip_p([-0.1, -0.2, -0.3])[0] == pytest.approx(0.25)  # the least 3 seeds give
    assert sign_flip_p([0.0, 0.0, 0.0])[0] == pytest.approx(1.0)


def test_sign_flip_p_against_a_direct_enumeration():
    d = np.array([0.03, -0.01, 0.02, 0.05, -0.02, 0.04])
    flips = np.array(np.meshgrid(*[[-1, 1]] * len(d))).reshape(len(d), -1).T
    means = (flips * d).mean(axis=1)
    obs = d.mean()
    one_sided = min((means >= obs - 1e-12).mean(), (means <= obs + 1e-12).mean())
    assert sign_flip_p(d)[0] == pytest.approx(min(1.0, 2 * one_sided))
    many = np.linspace(0.01, 0.02, 20)
    p, exact = sign_flip_p(many)
    assert not exact and p < 0.001 and sign_flip_p(many) == (p, exact)  # seeded


def test_one_seed_gives_no_interval_no_p_and_no_test():
    out = paired_comparison({3: 9.0}, {3: 10.0, 4: 11.0})
    assert out["n"] == 1 and out["mean"] == pytest.approx(-0.1) and out["wins"] == 1
    assert out["lo"] is None and out["hi"] is None and out["p"] is None
    assert out["n_for_power"] is None and not out["power_beyond_max"]
    assert verdict(out["mean"], out["p"], out["n"]) == "one seed: no test"
    assert t_interval([1.0]) is None


def test_paired_comparison_pairs_by_seed():
    out = paired_comparison({0: 9.0, 1: 10.0, 2: 12.0, 7: 1.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert out["n"] == 3 and out["wins"] == 1
    assert out["mean"] == pytest.approx(np.mean([-0.1, 0.0, 0.2]))
    assert paired_comparison({5: 1.0}, {0: 10.0}) is None


def test_holm_on_a_hand_worked_case():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.6]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm([0.02]) == [pytest.approx(0.02)] and holm([]) == []


def test_holm_in_a_table_of_many_comparisons_changes_decisions():
    """Thirty comparisons at p = 1/64 each: every one significant alone, none after Holm."""
    d = [-0.01, -0.02, -0.03, -0.02, -0.01, -0.04]
    p = paired_comparison(*pairs(d))["p"]
    assert p == pytest.approx(2 / 64)
    assert verdict(-0.02, p, 6) == "better"
    adjusted = holm([p] * 30)
    assert all(a == pytest.approx(min(1.0, 30 * p)) for a in adjusted)
    assert {verdict(-0.02, a, 6) for a in adjusted} == {"no detectable difference"}


def test_seeds_for_power_matches_the_textbook_and_grows_with_the_spread():
    assert seeds_for_power(0.5, 1.0) == 34  # paired t, d = 0.5, 80 %, two-sided 5 %
    ns = [paired_comparison(*pairs([-0.02 + s, -0.02 - s, -0.02 + s / 2, -0.02 - s / 2]))
          ["n_for_power"] for s in (0.005, 0.01, 0.02, 0.04)]
    assert all(n is not None for n in ns) and ns == sorted(ns) and ns[0] < ns[-1]
    # zero spread: nothing to estimate; zero mean: beyond 1000 seeds, flagged
    assert paired_comparison(*pairs([-0.02, -0.02, -0.02]))["n_for_power"] is None
    flat = paired_comparison(*pairs([0.01, -0.01, 0.01, -0.01]))
    assert flat["n_for_power"] is None and flat["power_beyond_max"]


@pytest.mark.parametrize("mean,p,n,word", [
    (-0.1, None, 1, "one seed: no test"),
    (-0.1, 0.25, 3, "too few seeds to tell"),
    (-0.1, 0.0625, 5, "too few seeds to tell"),  # even unanimous, p > 0.05
    (-0.1, 0.03125, 6, "better"),
    (0.1, 0.03125, 6, "worse"),
    (-0.1, 0.0625, 6, "no detectable difference"),
    (-0.1, 0.05, 8, "better"),
    (0.0, 1.0, 10, "no detectable difference")])
def test_verdict_rule(mean, p, n, word):
    assert verdict(mean, p, n) == word


def test_the_seed_threshold_is_where_the_smallest_p_reaches_alpha():
    assert min_seeds(0.05) == 6 and 2 / 2**5 > 0.05 >= 2 / 2**6
    assert min_seeds(0.01) == 8
    assert "too few seeds to tell" in VERDICT_RULE and "fewer than 6 seeds" in VERDICT_RULE


@pytest.mark.parametrize("curve,target,expected", [
    ([5, 4, 3, 2], 3, 3), ([5, 4, 3, 2], 5, 1), ([5, 4], 1, None), ([], 1, None)])
def test_epochs_to_reach_counts_from_one(curve, target, expected):
    assert epochs_to_reach(curve, target) == expected


def test_a_table_too_small_for_holm_says_too_few_seeds():
    """Six seeds that all agree give p = 2/64; over five comparisons Holm multiplies the
    smallest p by five (0.156): nothing can be detected, and the verdict says why."""
    assert min_seeds(0.05, comparisons=5) == 8 and 5 * 2 / 2**7 > 0.05 >= 5 * 2 / 2**8
    assert verdict(-0.02, 0.156, 6, comparisons=5) == "too few seeds to tell"
    assert verdict(-0.02, 0.03, 6, comparisons=1) == "better"
    assert verdict(-0.02, 0.039, 8, comparisons=5) == "better"
    assert verdict(-0.02, 0.2, 8, comparisons=5) == "no detectable difference"

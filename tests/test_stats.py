"""The statistics of the report against scipy, statsmodels and hand computations on known
cases, and the verdict rule on constructed tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_paired

from bench.report.stats import (
    beaten_by,
    best_set,
    epochs_to_reach,
    holm,
    intervals,
    judge_table,
    log_ratios,
    mean_std,
    pooled_comparison,
    pooled_sd,
    recommends,
    seeds_to_resolve,
    sign_flip_pvalues,
    t_pvalues,
    tost_pvalues,
    verdict_rule,
    words,
)


def test_mean_std_uses_the_sample_deviation():
    assert mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, np.std([1, 2, 4], ddof=1)))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_log_ratios_pair_by_seed():
    d = log_ratios({0: 9.0, 1: 10.0, 2: 12.0, 7: 1.0}, {0: 10.0, 1: 10.0, 2: 10.0, 5: 3.0})
    assert d == pytest.approx(np.log([0.9, 1.0, 1.2]))
    assert len(log_ratios({5: 1.0}, {0: 10.0})) == 0


def test_t_test_and_interval_by_hand_and_by_scipy():
    d = np.array([-0.02, -0.05, 0.01])
    m, s = d.mean(), d.std(ddof=1)
    assert float(t_pvalues(d)) == pytest.approx(stats.ttest_1samp(d, 0).pvalue, rel=1e-12)
    half = 4.302652729911275 * s / math.sqrt(3)  # t_{0.975, 2} = 4.303
    assert [float(x) for x in intervals(d, 0.95)] == pytest.approx([m - half, m + half])
    # a Bonferroni level over 5 comparisons is wider: t_{1 - 0.005, 2} = 9.925
    lo, hi = intervals(d, 1 - 0.05 / 5)
    assert float(hi - lo) == pytest.approx(2 * 9.924843200918287 * s / math.sqrt(3))
    # vectorised over leading axes, row by row the same as one at a time
    rows = np.array([d, d + 0.01, d * 2])
    assert t_pvalues(rows) == pytest.approx([float(t_pvalues(r)) for r in rows])


def test_no_spread_decides_by_the_data_alone():
    assert float(t_pvalues([0.01, 0.01, 0.01])) == 0.0
    assert float(t_pvalues([0.0, 0.0, 0.0])) == 1.0
    assert float(tost_pvalues([0.005, 0.005, 0.005], 0.02)) == 0.0
    assert float(tost_pvalues([0.05, 0.05, 0.05], 0.02)) == 1.0
    lo, hi = intervals([0.01, 0.01, 0.01], 0.95)
    assert float(lo) == float(hi) == pytest.approx(0.01)


def test_tost_is_statsmodels_ttost_paired_on_the_mae_ratio():
    rng = np.random.default_rng(3)
    ref = rng.uniform(2.5, 3.5, 6)
    cand = ref * np.exp(rng.normal(0.004, 0.006, 6))
    want = ttost_paired(cand, ref, 0.98, 1.02, transform=np.log)[0]
    assert float(tost_pvalues(np.log(cand / ref), 0.02)) == pytest.approx(want, rel=1e-10)
    # by hand: the larger of two one-sided t tests against log(0.98) and log(1.02)
    d = np.log(cand / ref)
    lower = stats.ttest_1samp(d, math.log(0.98), alternative="greater").pvalue
    upper = stats.ttest_1samp(d, math.log(1.02), alternative="less").pvalue
    assert want == pytest.approx(max(lower, upper), rel=1e-10)


def test_exact_sign_flip_of_five_positive_differences_is_one_sixteenth():
    p, exact = sign_flip_pvalues([0.01, 0.02, 0.03, 0.04, 0.05])
    assert exact and float(p) == pytest.approx(1 / 16)  # 2 of 32 sign patterns
    assert float(sign_flip_pvalues([-0.1, -0.2, -0.3])[0]) == pytest.approx(0.25)
    assert float(sign_flip_pvalues([0.0, 0.0, 0.0])[0]) == pytest.approx(1.0)


def test_sign_flip_against_a_direct_enumeration_and_seeded_beyond_sixteen():
    d = np.array([0.03, -0.01, 0.02, 0.05, -0.02, 0.04])
    flips = np.array(np.meshgrid(*[[-1, 1]] * len(d))).reshape(len(d), -1).T
    means = (flips * d).mean(axis=1)
    obs = d.mean()
    one_sided = min((means >= obs - 1e-12).mean(), (means <= obs + 1e-12).mean())
    assert float(sign_flip_pvalues(d)[0]) == pytest.approx(min(1.0, 2 * one_sided))
    many = np.linspace(0.01, 0.02, 20)
    p, exact = sign_flip_pvalues(many)
    assert not exact and float(p) < 0.001
    assert float(sign_flip_pvalues(many)[0]) == float(p)  # seeded: the same p again


def test_stratified_sign_flip_weights_each_experiment_equally():
    """Two experiments of 3 and 5 seeds: the statistic is the mean of the two means; an
    exact enumeration by hand agrees."""
    a, b = np.array([0.02, 0.01, 0.03]), np.array([-0.01, 0.0, 0.004, -0.002, 0.001])
    x = np.r_[a, b]
    w = np.r_[np.full(3, 1 / 6), np.full(5, 1 / 10)]
    flips = np.array(np.meshgrid(*[[-1, 1]] * 8)).reshape(8, -1).T
    null = (flips * x * w).sum(axis=1)
    obs = (x * w).sum()
    want = min(1.0, 2 * min((null >= obs - 1e-12).mean(), (null <= obs + 1e-12).mean()))
    pooled = pooled_comparison([a, b])
    assert pooled.mean == pytest.approx((a.mean() + b.mean()) / 2)
    assert pooled.exact and pooled.p == pytest.approx(want)


@pytest.mark.filterwarnings("ignore:`use_t=True` requires")
def test_fixed_and_random_effects_come_from_combine_effects():
    rng = np.random.default_rng(0)
    parts = [rng.normal(m, 0.01, 6) for m in (-0.01, 0.0, 0.015)]
    pooled = pooled_comparison(parts)
    effects = np.array([d.mean() for d in parts])
    v = np.array([d.var(ddof=1) / 6 for d in parts])
    fe = combine_effects(effects, np.full(3, v.mean()), use_t=False)
    assert float(fe.mean_effect_fe) == pytest.approx(effects.mean())  # equal weights
    assert float(fe.sd_eff_w_fe) == pytest.approx(math.sqrt(v.sum()) / 3)
    centre = (pooled.fixed[0] + pooled.fixed[1]) / 2
    assert centre == pytest.approx(effects.mean())
    frame = combine_effects(effects, v, use_t=True, method_re="iterated").summary_frame()
    hk = frame.loc["random effect wls"]
    assert pooled.random[0] <= hk["ci_low"] + 1e-12 and pooled.random[1] >= hk["ci_upp"] - 1e-12
    # datasets that disagree: a new dataset is far less certain than these ones
    assert pooled.random[1] - pooled.random[0] > pooled.fixed[1] - pooled.fixed[0]


def test_holm_is_statsmodels_and_keeps_the_order():
    p = [0.01, 0.04, 0.03, 0.005]
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    # by hand: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.06, 0.04)
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.6]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm([]) == [] and holm([None]) == [None]


@pytest.mark.parametrize("mean,p,p_tost,n,word", [
    (-0.1, 0.01, 0.9, 6, "better"), (0.1, 0.01, 0.9, 6, "worse"),
    (0.001, 0.5, 0.01, 6, "equivalent"), (0.001, 0.5, 0.2, 6, "inconclusive"),
    (-0.1, 0.01, 0.01, 2, "two seeds"), (-0.1, np.nan, np.nan, 1, "one seed"),
    (-0.1, 0.05, 0.9, 3, "better")])
def test_words(mean, p, p_tost, n, word):
    assert str(words(mean, p, p_tost, n)) == word


def test_a_table_of_three_seeds_decides_every_comparison():
    """Three seeds, five comparisons: each reads better, worse, equivalent or inconclusive
    (never "too few seeds"), with simultaneous intervals at 1 - 0.05/5."""
    rng = np.random.default_rng(1)
    rows = [np.log(r) + rng.normal(0, 0.003, 3)
            for r in (0.90, 1.10, 1.0, 1.001, 1.03)]
    judged = judge_table(rows, 0.02)
    assert {j.word for j in judged} <= {"better", "worse", "equivalent", "inconclusive"}
    assert judged[0].word == "better" and judged[1].word == "worse"
    assert all(j.level == pytest.approx(0.99) for j in judged)
    ps = [float(t_pvalues(d)) for d in rows]
    assert [j.p_holm for j in judged] == pytest.approx(holm(ps))
    assert judged[0].text() == "better"
    inconclusive = judge_table([np.array([0.01, 0.06, -0.03])], 0.02)[0]
    assert inconclusive.text().startswith("inconclusive [") and "%" in inconclusive.text()


def test_an_interval_that_excludes_zero_always_reads_better_or_worse():
    """Bonferroni intervals are never more decisive than Holm."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        rows = [rng.normal(rng.normal(0, 0.02), 0.01, 4) for _ in range(5)]
        for j in judge_table(rows, 0.02, robustness=False):
            if j.lo > 0 or j.hi < 0:
                assert j.word in ("better", "worse")
            if math.log(0.98) <= j.lo and j.hi <= math.log(1.02):
                assert j.word in ("better", "worse", "equivalent")


def test_one_seed_gives_nothing_and_two_an_interval_only():
    one, two = judge_table([np.array([-0.1]), np.array([-0.1, -0.12])])
    assert one.text() == "one seed: no test" and one.lo is None and one.p is None
    assert two.text() == "two seeds: no verdict" and two.lo is not None
    assert two.level == pytest.approx(0.95)  # the one seed is not counted in m


def test_sign_flip_disagreement_is_flagged_only_where_it_could_decide():
    """Heavy-tailed data: t rejects while the sign-flip test cannot (or the reverse)."""
    few = judge_table([np.array([-0.05, -0.051, -0.049])])[0]  # 3 seeds: flip p >= 0.25
    assert few.word == "better" and not few.flip_can_reject and not few.flagged
    outlier = np.array([-0.01, -0.012, -0.011, -0.009, -0.01, -0.011, 0.3])
    j = judge_table([outlier])[0]
    assert j.flip_can_reject and j.word == "inconclusive"
    assert (j.p_flip_holm <= 0.05) == j.flagged


def test_seeds_to_resolve_grows_with_spread_and_comparisons_and_shrinks_with_margin():
    n = seeds_to_resolve(0.009, 5, 0.02)
    assert 8 <= n <= 20
    assert seeds_to_resolve(0.014, 5, 0.02) > n > seeds_to_resolve(0.009, 1, 0.02)
    assert seeds_to_resolve(0.009, 5, 0.05) < n
    assert seeds_to_resolve(0.5, 5, 0.001) is None  # beyond 1000
    # the fewest seeds at which the interval is narrow enough with 80 % probability, checked
    # by simulation at n and at n - 1
    rng = np.random.default_rng(0)

    def narrow(k: int) -> float:
        s = rng.normal(0, 0.009, (4000, k)).std(axis=1, ddof=1)
        return float((2 * stats.t.ppf(1 - 0.05 / 10, k - 1) * s / math.sqrt(k)
                      <= math.log(1.02)).mean())

    assert narrow(n) >= 0.78 and narrow(n - 1) < 0.82


def test_pooled_sd_weights_by_degrees_of_freedom():
    a, b = np.array([0.0, 0.02]), np.array([0.0, 0.01, 0.02, 0.03])
    want = math.sqrt((a.var(ddof=1) * 1 + b.var(ddof=1) * 3) / 4)
    assert pooled_sd([a, b, np.array([0.5])]) == pytest.approx(want)
    assert pooled_sd([np.array([0.1])]) is None


def test_best_set_excludes_only_what_another_beats():
    rng = np.random.default_rng(2)
    seeds = range(6)
    noise = {k: rng.normal(0, 0.003) for k in seeds}
    values = {name: {k: level * math.exp(noise[k] + rng.normal(0, 0.002)) for k in seeds}
              for name, level in (("a", 3.0), ("b", 3.001), ("c", 3.3))}
    best = best_set(values, 0.02)
    assert best.best in ("a", "b") and "c" in best.beaten and best.pairs == 3
    other = "b" if best.best == "a" else "a"
    assert best.members[other].word == "equivalent" and not best.alone
    assert beaten_by([("x", "y")], ["worse"]) == {"y": "x"}
    assert beaten_by([("x", "y")], ["better"]) == {"x": "y"}
    alone = best_set({"a": values["a"], "c": values["c"]})
    assert alone.alone and alone.best == "a"
    assert best_set({"a": values["a"]}) is None


def test_recommendation_needs_every_pooled_test_and_no_experiment_against_it():
    assert recommends([(-0.02, 0.01), (-0.03, 0.001)], judged_worse=False)
    assert not recommends([(-0.02, 0.01), (-0.03, 0.2)], judged_worse=False)
    assert not recommends([(-0.02, 0.01)], judged_worse=True)
    assert not recommends([(0.02, 0.01)], judged_worse=False)
    assert not recommends([], judged_worse=False)


def test_the_rule_is_stated_with_its_margin():
    text = verdict_rule(0.02)
    for phrase in ("**better**", "**worse**", "**equivalent within ±2 %**", "**inconclusive**",
                   "Holm", "TOST", "simultaneous", "Bonferroni", "One seed", "two seeds"):
        assert phrase in text, phrase
    assert "±1 %" in verdict_rule(0.01) and "too few seeds to tell" not in text


@pytest.mark.parametrize("curve,target,expected", [
    ([5, 4, 3, 2], 3, 3), ([5, 4, 3, 2], 5, 1), ([5, 4], 1, None), ([], 1, None)])
def test_epochs_to_reach_counts_from_one(curve, target, expected):
    assert epochs_to_reach(curve, target) == expected

"""Statistics for comparing schedules over the handful of seeds a grid affords.

Comparisons are paired by seed: every schedule of a seed starts from the same initial weights
and sees the same data order, so the per-seed difference removes most seed-to-seed noise.
Everything here works on per-seed **log ratios** of final test MAE, ``log(candidate /
reference)``: a margin of ±δ on the MAE ratio is then a fixed band, and a mean log ratio ``d``
reads as the relative change ``exp(d) - 1``.

The rule (``verdict_rule``), per table of m comparisons:

- **better / worse**: Holm-adjusted paired t p ≤ α (``t_pvalues``, ``holm``);
- **equivalent within ±δ**: otherwise, Holm-adjusted TOST p ≤ α (``tost_pvalues``, statsmodels'
  ``ttost_paired`` with ``transform=np.log``, so the margin is on the MAE ratio);
- **inconclusive [lo, hi]** otherwise, with the simultaneous interval;
- one seed: no interval, no verdict; two seeds: an interval, no verdict.

Intervals are simultaneous: paired t intervals at the Bonferroni level 1 − α/m
(``intervals``), so that all m cover together with probability ≥ 1 − α; an interval that
excludes 0 always comes with a Holm "better"/"worse", and one inside ±δ with "equivalent"
(Holm, step-down, may decide a row whose interval still touches a bound). The exact
sign-flip p (``sign_flip_pvalues``) is kept as a robustness check. Across experiments
(``pooled_comparison``) per-seed log ratios are pooled with equal weight per experiment and
tested with a stratified sign-flip test; ``combine_effects`` gives the fixed-effect ("on
these datasets") and random-effects ("for a new dataset") intervals.

Every test, interval and adjustment is scipy.stats' or statsmodels'; the functions here only
arrange the data and apply the rule. The array functions take the seeds on the last axis
and broadcast over leading ones, so that the simulation in ``bench.report.simulation``
measures exactly the procedure the reports apply.
"""

from __future__ import annotations

import gc
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import ttost_paired

ALPHA = 0.05
MARGIN = 0.02       # δ: "equivalent within ±2 %" unless a profile or --margin says otherwise
POWER = 0.80        # the probability "seeds needed" aims at
MAX_SEEDS = 1000
EXACT_UP_TO = 16    # seeds: up to 2**16 sign patterns are enumerated
RANDOM_PATTERNS = 9999  # beyond, this many random sign patterns (seeded)
VARIANCE_FLOOR = 1e-4 ** 2  # a per-seed spread below 0.01 % is taken as 0.01 % (pooling)

WORDS = ("better", "worse", "equivalent", "inconclusive", "two seeds", "one seed")


def verdict_rule(margin: float = MARGIN, alpha: float = ALPHA) -> str:
    """The rule in one paragraph, as every report and the statistics guide state it."""
    return (f"Each comparison is paired by seed on the per-seed log ratio of final test MAE. "
            f"It reads **better** or **worse** when its paired t p, Holm-adjusted over the "
            f"table's comparisons, is at most {alpha:g}; otherwise **equivalent within "
            f"±{margin_text(margin)}** when its TOST p (two one-sided t tests that the MAE "
            f"ratio lies between {1 - margin:g} and {1 + margin:g}), Holm-adjusted likewise, is "
            f"at most {alpha:g}; otherwise **inconclusive**, with its interval. Intervals are "
            f"simultaneous: paired t intervals at the Bonferroni level 1 − {alpha:g}/m for a "
            "table of m comparisons, so that all of them hold together with 95 % "
            "probability. One seed gives no interval and no verdict; two seeds an interval "
            "and no verdict. Identical runs are merged into one row before anything is "
            "counted.")


def margin_text(margin: float) -> str:
    return f"{100 * margin:g} %"


# -- single numbers ---------------------------------------------------------------------------
def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def change(log_ratio):
    """A log ratio as a relative change: ``exp(d) - 1`` (−0.02 is 2 % lower MAE)."""
    return np.expm1(log_ratio)


def log_ratios(candidate: dict[int, float], reference: dict[int, float]) -> np.ndarray:
    """Per-seed ``log(candidate / reference)`` over the seeds both have, in seed order."""
    seeds = sorted(set(candidate) & set(reference))
    return np.array([math.log(candidate[s] / reference[s]) for s in seeds], dtype=float)


# -- tests on arrays: seeds on the last axis ------------------------------------------------
def _spread(d: np.ndarray) -> np.ndarray:
    return np.std(d, axis=-1, ddof=1)


def t_pvalues(d) -> np.ndarray:
    """Two-sided paired t p of mean log ratio 0 (``scipy.stats.ttest_1samp``). Where the
    seeds agree exactly (no spread) the data decide alone: p = 0 for a nonzero mean, 1 for a
    zero one."""
    d = np.asarray(d, dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = np.asarray(stats.ttest_1samp(d, 0.0, axis=-1).pvalue, dtype=float)
    flat = _spread(d) == 0
    return np.where(flat, np.where(d.mean(axis=-1) == 0, 1.0, 0.0), p)


def tost_pvalues(d, margin: float = MARGIN) -> np.ndarray:
    """TOST p that the MAE ratio lies within [1 − δ, 1 + δ] (statsmodels' ``ttost_paired``
    with ``transform=np.log``), per row of per-seed log ratios ``d``. Without spread: 0 when
    the (common) ratio lies strictly inside the margin, else 1."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    flat_d = d.reshape(-1, n).T  # (seeds, rows): statsmodels tests each column
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p, _, _ = ttost_paired(np.exp(flat_d), np.ones_like(flat_d), 1 - margin, 1 + margin,
                               transform=np.log)
    p = np.asarray(p, dtype=float).reshape(d.shape[:-1])
    mean = d.mean(axis=-1)
    inside = (mean > math.log(1 - margin)) & (mean < math.log(1 + margin))
    return np.where(_spread(d) == 0, np.where(inside, 0.0, 1.0), p)


def intervals(d, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Paired t interval of the mean log ratio at ``level`` (``ttest_1samp``'s
    ``confidence_interval``); a point where the seeds agree exactly."""
    d = np.asarray(d, dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_1samp(d, 0.0, axis=-1).confidence_interval(level)
    mean = d.mean(axis=-1)
    flat = _spread(d) == 0
    return (np.where(flat, mean, np.asarray(ci.low, dtype=float)),
            np.where(flat, mean, np.asarray(ci.high, dtype=float)))


def sign_flip_pvalues(d, n_resamples: int = RANDOM_PATTERNS, seed: int = 0,
                      weights=None, alternative: str = "two-sided"
                      ) -> tuple[np.ndarray, bool]:
    """Sign-flip permutation p of the (weighted) mean of ``d`` (``scipy.stats.
    permutation_test``): every seed's sign is flipped independently, all 2**n patterns up to
    16 seeds (exact), otherwise ``n_resamples`` random ones from a seeded generator. Returns
    the p-values and whether they are exact."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=float)

    def statistic(x, axis=-1):
        return np.sum(x * w, axis=axis)

    exact = n <= EXACT_UP_TO
    res = stats.permutation_test(
        (d,), statistic, permutation_type="samples", vectorized=True, axis=-1,
        alternative=alternative, n_resamples=np.inf if exact else n_resamples,
        rng=np.random.default_rng(seed), batch=256)  # small batches: ten times faster
    return np.minimum(1.0, np.asarray(res.pvalue, dtype=float)), exact


def holm(pvalues) -> list[float | None]:
    """Holm step-down adjusted p-values (statsmodels' ``multipletests``) over the entries
    that are not None, in the input order."""
    values = list(pvalues)
    idx = [i for i, p in enumerate(values) if p is not None and not math.isnan(p)]
    out: list[float | None] = [None] * len(values)
    if not idx:
        return out
    # multipletests' Holm branch runs a full garbage collection on every call; freezing the
    # heap first keeps that from costing a tenth of a second per table in a large process.
    gc.freeze()
    try:
        adjusted = multipletests([values[i] for i in idx], alpha=ALPHA, method="holm")[1]
    finally:
        gc.unfreeze()
    for i, p in zip(idx, adjusted):
        out[i] = float(p)
    return out


def words(mean, p_holm, p_tost_holm, n, alpha: float = ALPHA) -> np.ndarray:
    """The verdict word per comparison (``WORDS``), from the mean log ratio, the
    Holm-adjusted t and TOST p and the seeds. Vectorised."""
    mean, p_holm, p_tost_holm, n = np.broadcast_arrays(
        np.asarray(mean, float), np.asarray(p_holm, float), np.asarray(p_tost_holm, float),
        np.asarray(n))
    decided = p_holm <= alpha
    out = np.where(decided, np.where(mean < 0, "better", "worse"),
                   np.where(p_tost_holm <= alpha, "equivalent", "inconclusive"))
    out = np.where(n == 2, "two seeds", out)
    return np.where(n <= 1, "one seed", out)


# -- one comparison table --------------------------------------------------------------------
@dataclass(frozen=True)
class Judgement:
    """One comparison of a table: candidate against reference, paired by seed."""

    n: int                     # seeds both have
    mean: float                # mean per-seed log ratio (negative: candidate lower)
    lo: float | None           # simultaneous interval of the mean log ratio
    hi: float | None
    level: float | None        # its confidence level (1 − α/m)
    p: float | None            # paired t p, raw and Holm-adjusted over the table
    p_holm: float | None
    p_tost: float | None       # TOST p for ±margin, raw and Holm-adjusted
    p_tost_holm: float | None
    p_flip: float | None       # exact sign-flip p, raw and Holm-adjusted (robustness)
    p_flip_holm: float | None
    flip_exact: bool
    flip_can_reject: bool      # whether m·2/2**n ≤ α: the sign-flip test could decide at all
    wins: int                  # seeds on which the candidate is lower
    word: str                  # one of WORDS
    margin: float

    @property
    def change(self) -> float:
        return float(change(self.mean))

    @property
    def decided(self) -> bool:
        return self.word in ("better", "worse", "equivalent")

    @property
    def flagged(self) -> bool:
        """The sign-flip test, where it could decide, disagrees with the t verdict on
        whether there is a difference."""
        if self.p_flip_holm is None or not self.flip_can_reject or self.n < 3:
            return False
        return (self.p_flip_holm <= ALPHA) != (self.word in ("better", "worse"))

    def interval_text(self) -> str:
        if self.lo is None:
            return "–"
        return f"[{pct(change(self.lo))}, {pct(change(self.hi))}]"

    def text(self) -> str:
        """``better``, ``equivalent within ±2 %``, ``inconclusive [−1.0 %, +3.1 %]``..."""
        if self.word == "equivalent":
            return f"equivalent within ±{margin_text(self.margin)}"
        if self.word == "inconclusive":
            return f"inconclusive {self.interval_text()}"
        if self.word == "two seeds":
            return "two seeds: no verdict"
        if self.word == "one seed":
            return "one seed: no test"
        return self.word


def pct(x: float) -> str:
    """A relative change as a signed percentage: ``-2.5 %``."""
    return f"{100 * x:+.1f} %"


def _by_length(rows: list[np.ndarray], fn) -> list:
    """``fn`` applied to the rows of two seeds or more, stacked by length (one vectorised
    call per seed count); None for the others."""
    out: list = [None] * len(rows)
    for n in sorted({len(d) for d in rows if len(d) >= 2}):
        idx = [i for i, d in enumerate(rows) if len(d) == n]
        values = fn(np.stack([rows[i] for i in idx]))
        for k, i in enumerate(idx):
            out[i] = values[k] if not isinstance(values, tuple) else tuple(
                v[k] if isinstance(v, np.ndarray) else v for v in values)
    return out


def judge_table(rows: list[np.ndarray], margin: float = MARGIN, alpha: float = ALPHA,
                robustness: bool = True) -> list[Judgement]:
    """Judge the comparisons of one table (each a vector of per-seed log ratios) by the rule:
    Holm and the Bonferroni level over the m comparisons that have two seeds or more."""
    rows = [np.asarray(d, dtype=float) for d in rows]
    m = sum(len(d) >= 2 for d in rows)
    level = 1 - alpha / m if m else None
    p_t = _by_length(rows, t_pvalues)
    p_e = _by_length(rows, lambda d: tost_pvalues(d, margin))
    bounds = _by_length(rows, lambda d: intervals(d, level))
    flips = (_by_length(rows, sign_flip_pvalues) if robustness else [None] * len(rows))
    p_f = [None if f is None else f[0] for f in flips]
    h_t, h_e, h_f = holm(p_t), holm(p_e), holm(p_f)
    out = []
    for i, d in enumerate(rows):
        n = len(d)
        mean = float(d.mean()) if n else float("nan")
        word = str(words(mean if n else 0.0, np.nan if h_t[i] is None else h_t[i],
                         np.nan if h_e[i] is None else h_e[i], n, alpha))
        lo, hi = (float(bounds[i][0]), float(bounds[i][1])) if n >= 2 else (None, None)
        out.append(Judgement(
            n=n, mean=mean, lo=lo, hi=hi, level=level if n >= 2 else None,
            p=None if p_t[i] is None else float(p_t[i]), p_holm=h_t[i],
            p_tost=None if p_e[i] is None else float(p_e[i]), p_tost_holm=h_e[i],
            p_flip=None if p_f[i] is None else float(p_f[i]), p_flip_holm=h_f[i],
            flip_exact=True if flips[i] is None else bool(flips[i][1]),
            flip_can_reject=n >= 2 and m * 2.0 / 2 ** n <= alpha,
            wins=int((d < 0).sum()), word=word, margin=margin))
    return out


def seeds_to_resolve(sd: float, comparisons: int, margin: float = MARGIN,
                     alpha: float = ALPHA, power: float = POWER,
                     max_n: int = MAX_SEEDS) -> int | None:
    """Fewest seeds at which a table of ``comparisons`` reaches a verdict (better, worse or
    equivalent within ±margin) with probability ``power`` whatever the true difference, when
    the per-seed log ratios spread by ``sd``: the simultaneous interval is then at most
    ``log(1 + margin)`` wide, so it excludes 0 or lies inside the margin. Its width is
    ``2 t s / √n``; ``s²`` follows ``sd² χ²(n−1)/(n−1)`` (scipy's t and chi2). None beyond
    ``max_n`` (or for no spread: any 3 seeds do)."""
    if sd <= 0:
        return 3
    ns = np.arange(3, max_n + 1)
    t = stats.t.ppf(1 - alpha / (2 * max(1, comparisons)), ns - 1)
    s_max = math.log1p(margin) * np.sqrt(ns) / (2 * t)  # the largest spread that resolves
    reach = stats.chi2.cdf((ns - 1) * (s_max / sd) ** 2, ns - 1)
    hit = np.nonzero(reach >= power)[0]
    return int(ns[hit[0]]) if len(hit) else None


def pooled_sd(rows: list[np.ndarray]) -> float | None:
    """Standard deviation of the per-seed log ratios pooled over a table's comparisons
    (each weighted by its degrees of freedom); None with fewer than two seeds anywhere."""
    dof = sum(len(d) - 1 for d in rows if len(d) >= 2)
    if not dof:
        return None
    return math.sqrt(sum(float(np.var(d, ddof=1)) * (len(d) - 1) for d in rows
                         if len(d) >= 2) / dof)


# -- the best set of one table -----------------------------------------------------------------
@dataclass(frozen=True)
class BestSet:
    """The schedules that cannot be separated from the best of a table: all pairs compared,
    Holm over every pair; a schedule leaves the set when another is significantly better."""

    best: str
    members: dict[str, Judgement]   # every other member: its comparison with the best
    beaten: dict[str, str]          # excluded schedule -> one schedule better than it
    n: int                          # seeds (fewest of any pair)
    pairs: int                      # comparisons counted for Holm

    @property
    def decided(self) -> bool:
        return self.n >= 3

    @property
    def alone(self) -> bool:
        """The best is better than every other schedule."""
        return self.decided and not self.members


def beaten_by(pairs: list[tuple[str, str]], verdicts) -> dict[str, str]:
    """Who is out of a best set: for pairs ``(a, b)`` judged as ``b`` against ``a``, each
    schedule that some other is "better" than, mapped to the first such other."""
    beaten: dict[str, str] = {}
    for (a, b), word in zip(pairs, verdicts):
        if word == "worse":
            beaten.setdefault(b, a)
        elif word == "better":
            beaten.setdefault(a, b)
    return beaten


def best_set(values: dict[str, dict[int, float]], margin: float = MARGIN,
             alpha: float = ALPHA) -> BestSet | None:
    """The best set of a table of schedules (per-seed final test MAE each). The best is the
    schedule with the lowest geometric mean over the seeds all share; a schedule is out of the
    set when some other is "better" than it by the all-pairs rule (paired t, Holm over every
    pair). Each remaining member carries its comparison with the best (equivalent within the
    margin by TOST Holm-adjusted over every pair, or inconclusive with its interval at the
    Bonferroni level over every pair). None for fewer than two schedules."""
    names = [s for s in values if values[s]]
    if len(names) < 2:
        return None
    seeds = sorted(set.intersection(*(set(values[s]) for s in names)))
    geo = {s: float(np.mean([math.log(values[s][k]) for k in seeds])) if seeds
           else float(np.mean(np.log(list(values[s].values())))) for s in names}
    order = sorted(names, key=lambda s: (geo[s], names.index(s)))
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]
    diffs = [log_ratios(values[b], values[a]) for a, b in pairs]  # later against earlier
    judged = judge_table(diffs, margin, alpha, robustness=False)
    by_pair = dict(zip(pairs, judged))
    beaten = beaten_by(pairs, [j.word for j in judged])
    members = [s for s in order if s not in beaten] or order[:1]
    best = members[0]
    out = {}
    for s in members:
        if s == best:
            continue
        out[s] = by_pair[(best, s)]  # members follow the best in ``order``
    n = min((j.n for j in judged), default=0)
    return BestSet(best, out, beaten, n, len(pairs))


# -- across experiments --------------------------------------------------------------------------
@dataclass(frozen=True)
class Pooled:
    """One pair of schedules at one budget across experiments (candidate against other)."""

    experiments: int
    seeds: int                   # per-seed differences pooled
    mean: float                  # equal-weight pooled mean log ratio
    p: float                     # stratified sign-flip p, two-sided
    exact: bool
    p_tost: float                # pooled TOST by the same sign-flip test, shifted to ±margin
    fixed: tuple[float, float] | None    # fixed-effect interval: on these datasets
    random: tuple[float, float] | None   # random-effects interval: for a new dataset
    margin: float

    @property
    def change(self) -> float:
        return float(change(self.mean))


def pooled_comparison(diffs: list[np.ndarray], margin: float = MARGIN, alpha: float = ALPHA,
                      level: float = 1 - ALPHA, n_resamples: int = RANDOM_PATTERNS,
                      seed: int = 0) -> Pooled | None:
    """Per-seed log ratios of several experiments (one array each) pooled with equal weight
    per experiment.

    - the stratified sign-flip test of the pooled mean (signs flipped within each
      experiment, each seed on its own), two-sided;
    - the pooled TOST: the same test against −margin and +margin, one-sided each way;
    - on these datasets: the fixed-effect interval of the equal-weight mean (statsmodels'
      ``combine_effects`` with every experiment given the mean of their squared standard
      errors, which makes its weights equal and its standard error that of the equal-weight
      mean), with Welch–Satterthwaite degrees of freedom for the t quantile, since each
      spread comes from a few seeds;
    - for a new dataset: the random-effects interval (``combine_effects``, Paule–Mandel
      between-dataset variance, t with k − 1 degrees of freedom, Hartung–Knapp scaled but
      never narrower than without), which needs two experiments or more.

    Intervals are at ``level``. None when no seed is shared."""
    parts = [np.asarray(d, dtype=float) for d in diffs if len(d)]
    if not parts:
        return None
    k = len(parts)
    w = np.concatenate([np.full(len(d), 1.0 / (k * len(d))) for d in parts])
    x = np.concatenate(parts)
    mean = float(np.sum(w * x))
    p, exact = sign_flip_pvalues(x, n_resamples, seed, w)
    p_lo, _ = sign_flip_pvalues(x - math.log(1 - margin), n_resamples, seed, w,
                                alternative="greater")
    p_hi, _ = sign_flip_pvalues(x - math.log1p(margin), n_resamples, seed, w,
                                alternative="less")
    fixed = random = None
    if all(len(d) >= 2 for d in parts):
        effects = np.array([d.mean() for d in parts])
        v = np.array([max(float(np.var(d, ddof=1)), VARIANCE_FLOOR) / len(d) for d in parts])
        dof = float(v.sum() ** 2 / np.sum(v ** 2 / np.array([len(d) - 1 for d in parts])))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            fe = combine_effects(effects, np.full(k, v.mean()), use_t=False)
            half = float(stats.t.ppf(0.5 + level / 2, dof)) * float(fe.sd_eff_w_fe)
            fixed = (float(fe.mean_effect_fe) - half, float(fe.mean_effect_fe) + half)
            if k >= 2:
                re = combine_effects(effects, v, use_t=True, method_re="iterated")
                frame = re.summary_frame(alpha=1 - level)
                # Hartung-Knapp ("wls"), never narrower than the plain random-effects t
                # interval: with few datasets that agree by chance, Hartung-Knapp alone can
                # be narrower than the fixed effect's (the usual variance correction).
                rows = frame.loc[["random effect", "random effect wls"]]
                random = (float(rows["ci_low"].min()), float(rows["ci_upp"].max()))
    return Pooled(k, len(x), mean, float(p), exact, float(max(p_lo, p_hi)), fixed, random,
                  margin)


def interval_pct(bounds: tuple[float, float] | None) -> str:
    """A log-ratio interval as relative changes: ``[−1.2 %, +0.4 %]``."""
    if bounds is None:
        return "–"
    return f"[{pct(change(bounds[0]))}, {pct(change(bounds[1]))}]"


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    """First epoch (1-based count) at which ``curve`` is at or below ``target``."""
    for i, v in enumerate(curve):
        if v <= target:
            return i + 1
    return None


def recommends(top_against_others: list[tuple[float, float]], judged_worse: bool,
               alpha: float = ALPHA) -> bool:
    """The cross-experiment rule: the top schedule (lowest pooled mean) is recommended only
    if its pooled sign-flip test rejects against every other schedule in its favour — each
    ``(pooled mean log ratio of top against other, p)`` — and no experiment judges it worse
    than another schedule (it is in every experiment's best set)."""
    return (not judged_worse and bool(top_against_others)
            and all(p <= alpha and mean < 0 for mean, p in top_against_others))

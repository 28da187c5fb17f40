"""The verdict rules measured as statistical procedures: how often they are wrong, how often
they decide, by simulation at the noise the committed reports show.

    python -m bench.report.simulation                 # the rates docs/statistics.md quotes
    python -m bench.report.simulation --reps 2000     # quicker, rougher

Noise model: the log of a schedule's final test MAE on a seed is its true level plus
independent noise with variance σ²/2, so that the per-seed log ratio of two schedules
spreads by σ: 0.9 % as on synthetic-la, 1.4 % as on SZ-taxi (the tuned study's paired
spreads). ``heavy`` draws the noise from a t distribution with 3 degrees of freedom scaled
to the same variance. Every verdict is made by the functions the reports use
(``bench.report.stats``): the same tests, the same Holm adjustment, the same words; only the
arrays are stacked so that thousands of tables take seconds.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from bench.report.stats import (
    ALPHA,
    MARGIN,
    beaten_by,
    holm,
    recommends,
    sign_flip_pvalues,
    t_pvalues,
    tost_pvalues,
    words,
)

SPREADS = {"synthetic-la": 0.009, "sz-taxi": 0.014}
SEEDS = (3, 6, 10)
COMPARISONS = 5          # a table of six schedules against the reference
PATTERNS = 2000          # random sign patterns of the pooled test beyond 16 seeds
DATASET_SPREADS = (0.009, 0.014, 0.014)  # three experiments in the cross-dataset rule


def noise(rng: np.random.Generator, shape: tuple[int, ...], sd, heavy: bool = False
          ) -> np.ndarray:
    """Per-schedule log-MAE noise whose paired differences spread by ``sd`` (broadcast on
    the second axis from the right when ``sd`` is a vector per dataset)."""
    scale = np.asarray(sd, dtype=float) / math.sqrt(2)
    if heavy:
        return rng.standard_t(3, size=shape) / math.sqrt(3) * scale
    return rng.normal(size=shape) * scale


def table_words(d: np.ndarray, margin: float = MARGIN, alpha: float = ALPHA) -> np.ndarray:
    """Verdict words of many tables at once: ``d`` is (tables, comparisons, seeds) of
    per-seed log ratios; Holm within each table, as ``judge_table`` does."""
    p_t, p_e = t_pvalues(d), tost_pvalues(d, margin)
    h_t = np.array([holm(row) for row in p_t], dtype=float)
    h_e = np.array([holm(row) for row in p_e], dtype=float)
    return words(d.mean(axis=-1), h_t, h_e, d.shape[-1], alpha)


def table_rates(n: int, sd: float, reps: int, rng: np.random.Generator,
                margin: float = MARGIN, heavy: bool = False, m: int = COMPARISONS,
                only: tuple[str, ...] | None = None) -> dict:
    """Against a reference, m comparisons on n seeds:

    - ``false_decision``: the share of tables with any "better" or "worse" when all
      schedules are equal (family-wise error);
    - ``equivalent``: the share of comparisons of equal schedules that read "equivalent";
    - ``false_equivalent``: the share of comparisons with a true difference of exactly
      ±margin that read "equivalent" (the others in the table equal; the larger side);
    - ``power``: the share of tables in which one schedule 2 % better than the reference,
      the others equal, reads "better".

    ``only`` limits the scenarios simulated (``null``, ``margin``, ``power``).
    """
    def draw(first: float) -> np.ndarray:
        e = noise(rng, (reps, m + 1, n), sd, heavy)
        d = e[:, 1:, :] - e[:, :1, :]
        d[:, 0, :] += first
        return d

    only = only or ("null", "margin", "power")
    out = {}
    if "null" in only:
        null = table_words(draw(0.0), margin)
        out["false_decision"] = float(np.mean(np.isin(null, ("better", "worse")).any(axis=1)))
        out["equivalent"] = float(np.mean(null == "equivalent"))
    if "margin" in only:
        out["false_equivalent"] = max(
            float(np.mean(table_words(draw(shift), margin)[:, 0] == "equivalent"))
            for shift in (math.log1p(margin), math.log(1 - margin)))
    if "power" in only:
        out["power"] = float(np.mean(table_words(draw(math.log(0.98)), margin)[:, 0]
                                     == "better"))
    return out


def best_set_rates(n: int, sd: float, reps: int, rng: np.random.Generator,
                   margin: float = MARGIN, k: int = COMPARISONS + 1) -> dict:
    """All pairs of k schedules, Holm over every pair (``best_set``'s rule):

    - ``false_exclusion``: with all equal, the share of tables in which some schedule is
      put out of the best set;
    - ``best_excluded``: with one schedule 2 % better than the others, the share in which it
      is put out;
    - ``alone``: in that case, the share in which it is the only member (it is found best).
    """
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    ia, ib = np.array(pairs).T

    def members(levels: np.ndarray) -> list[set[int]]:
        log_mae = levels[None, :, None] + noise(rng, (reps, k, n), sd)
        verdicts = table_words(log_mae[:, ib, :] - log_mae[:, ia, :], margin)
        return [set(range(k)) - set(beaten_by(pairs, row)) for row in verdicts]

    equal = members(np.zeros(k))
    better = members(np.r_[math.log(0.98), np.zeros(k - 1)])
    return {"false_exclusion": float(np.mean([len(s) < k for s in equal])),
            "best_excluded": float(np.mean([0 not in s for s in better])),
            "alone": float(np.mean([s == {0} for s in better]))}


def recommendation_rates(n: int, reps: int, rng: np.random.Generator,
                         spreads=DATASET_SPREADS, k: int = COMPARISONS + 1,
                         margin: float = MARGIN, patterns: int = PATTERNS) -> dict:
    """The cross-experiment rule on len(spreads) experiments of k schedules and n seeds each
    (``recommends``):

    - ``false_recommendation``: with all schedules equal everywhere, the share of studies
      that recommend one;
    - ``mixed``: the share recommending a schedule 2 % better on the first dataset and 2 %
      worse on the second (equal on the rest);
    - ``power``: the share recommending a schedule 2 % better on every dataset.
    """
    e = len(spreads)
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    ia, ib = np.array(pairs).T

    def recommended(shift: np.ndarray) -> np.ndarray:
        """Which schedule each study recommends (−1: none); ``shift`` (e, k) true levels."""
        log_mae = shift[None, :, :, None] + noise(
            rng, (reps, e, k, n), np.asarray(spreads)[:, None, None])
        score = log_mae.mean(axis=(1, 3))                 # equal weight per experiment
        ranked = np.argsort(score, axis=1)
        top = ranked[:, 0]
        rows = np.arange(reps)

        def pooled(other: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = (log_mae[idx, :, top[idx], :] - log_mae[idx, :, other, :]).reshape(len(idx), -1)
            return x.mean(axis=1), sign_flip_pvalues(x, patterns)[0]

        # The closest schedule first: the rule needs every comparison to reject, so only the
        # studies that pass one are tested against the next.
        tests: dict[int, list[tuple[float, float]]] = {i: [] for i in rows}
        alive = rows
        for rank in range(1, k):
            mean, p = pooled(ranked[alive, rank], alive)
            for i, mi, pi in zip(alive, mean, p):
                tests[i].append((float(mi), float(pi)))
            alive = alive[(p <= ALPHA) & (mean < 0)]
            if not len(alive):
                break
        out = np.full(reps, -1)
        for i in alive:
            d = log_mae[i][:, ib, :] - log_mae[i][:, ia, :]     # (experiments, pairs, n)
            worse = any(int(top[i]) in beaten_by(pairs, row) for row in table_words(d, margin))
            if recommends(tests[i], worse):
                out[i] = top[i]
        return out

    equal = recommended(np.zeros((e, k)))
    mixed_shift = np.zeros((e, k))
    mixed_shift[0, 0], mixed_shift[1, 0] = math.log(0.98), math.log(1.02)
    mixed = recommended(mixed_shift)
    everywhere = np.zeros((e, k))
    everywhere[:, 0] = math.log(0.98)
    power = recommended(everywhere)
    return {"false_recommendation": float(np.mean(equal >= 0)),
            "mixed": float(np.mean(mixed == 0)),
            "power": float(np.mean(power == 0))}


def measure(reps: int = 4000, seed: int = 0, seeds=SEEDS) -> dict:
    """Every rate at every seed count (the numbers of docs/statistics.md at the default
    reps); the cross-dataset rule at a quarter of ``reps`` (each study runs several
    permutation tests)."""
    rng = np.random.default_rng(seed)
    out: dict = {}
    for n in seeds:
        out[n] = {
            "table": {name: table_rates(n, sd, reps, rng) for name, sd in SPREADS.items()},
            "table_heavy": table_rates(n, SPREADS["synthetic-la"], reps, rng, heavy=True),
            "best_set": best_set_rates(n, SPREADS["synthetic-la"], reps, rng),
            "across": recommendation_rates(n, max(1, reps // 4), rng),
        }
    return out


def format_rates(rates: dict, reps: int) -> str:
    """The measured rates as a markdown table, one row per seed count."""
    head = ("| seeds | false better/worse (normal, heavy tails) | equivalent when equal "
            "(0.9 %, 1.4 %) | false equivalent at ±δ | power, 2 % (0.9 %, 1.4 %) | "
            "best set: false exclusion | best set: 2 % best found alone | across: false "
            "recommendation | across: ±2 % mixed recommended | across: 2 % everywhere "
            "recommended |\n|" + " --: |" * 10)
    lines = [head]
    f = lambda x: f"{100 * x:.1f} %"  # noqa: E731
    for n, r in rates.items():
        syn, taxi = r["table"]["synthetic-la"], r["table"]["sz-taxi"]
        lines.append(
            f"| {n} | {f(syn['false_decision'])}, {f(r['table_heavy']['false_decision'])} | "
            f"{f(syn['equivalent'])}, {f(taxi['equivalent'])} | "
            f"{f(max(syn['false_equivalent'], taxi['false_equivalent']))} | "
            f"{f(syn['power'])}, {f(taxi['power'])} | {f(r['best_set']['false_exclusion'])} | "
            f"{f(r['best_set']['alone'])} | {f(r['across']['false_recommendation'])} | "
            f"{f(r['across']['mixed'])} | {f(r['across']['power'])} |")
    lines.append(f"\n{reps} simulated tables per cell ({max(1, reps // 4)} studies across "
                 "three experiments).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report.simulation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rates = measure(args.reps, args.seed)
    print(format_rates(rates, args.reps))
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Verdicts on one experiment: identical runs merged, each budget's table judged against the
pre-declared reference, the best set, the seeds a table needs, and the answer they give.

The numbers come from ``bench.report.stats``; this module decides what is compared with
what. A budget's table holds one row per distinct set of runs: schedules whose runs have
identical per-seed records (``multistep`` and ``constant`` at 30 epochs train the same lr
path) are one row that names both, so that they are ranked once and counted once in Holm's
m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from bench.report.markdown import code, codes, f3, md_text
from bench.report.results import BASELINE_LABELS, Results, baseline, tuned_view
from bench.report.settings import Judging
from bench.report.stats import (
    BestSet,
    Judgement,
    best_set,
    judge_table,
    log_ratios,
    margin_text,
    pooled_sd,
    seeds_to_resolve,
)


def headline_view(res: Results) -> Results:
    """What every headline section is made from: in a tuned experiment the tuned view (each
    schedule under its own name at the setting its tuning chose), complete even when the
    schedules' own settings were never trained (their names then come from the tuning
    record, their descriptions from the chosen points); otherwise the results as they are."""
    if not res.tuning:
        return res
    view = tuned_view(res)
    if view.summary.empty:
        return res
    chosen = {base: [c.get("chosen") for c in per.values() if isinstance(c, dict)]
              for base, per in res.tuning.get("schedules", {}).items()
              if isinstance(per, dict)}

    def first(base: str) -> int:
        names = [base, *[c for c in chosen.get(base, []) if isinstance(c, str)]]
        return min((res.order.index(n) for n in names if n in res.order),
                   default=len(res.order))

    order = sorted(chosen, key=lambda b: (first(b), b))
    schedules = dict(view.schedules)
    for base in order:
        if base not in schedules:
            point = next((c for c in chosen[base] if c in res.schedules), None)
            if point is not None:
                schedules[base] = res.schedules[point]
    return replace(view, order=order, schedules=schedules)


# The per-seed records that must agree for two schedules' runs to be the same runs.
MERGE_COLUMNS = ("val_mae", "test_mae", "best_epoch", "best_val_mae", "best_test_mae",
                 "test_rmse", "test_mape")


@dataclass(frozen=True)
class Row:
    """One row of a budget's table: a schedule, or several whose runs are identical."""

    names: tuple[str, ...]
    values: dict[int, float]           # seed -> final test MAE

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.values.values()))) if self.values else float("nan")

    @property
    def label(self) -> str:
        return codes(self.names)


def signature(res: Results, schedule: str, budget: int) -> tuple:
    """The finished runs' per-seed records of a schedule at a budget, comparable exactly."""
    df = res.finished()
    df = df[(df["schedule"] == schedule) & (df["budget"] == budget)].sort_values("seed")
    columns = [c for c in MERGE_COLUMNS if c in df.columns]
    return tuple((int(r["seed"]), *(repr(float(r[c])) for c in columns))
                 for _, r in df.iterrows())


def merged_rows(res: Results, budget: int, names: list[str] | None = None) -> list[Row]:
    """The budget's rows, identical runs merged, ranked by mean final test MAE (ties keep
    registration order)."""
    groups: dict[tuple, list[str]] = {}
    for s in names if names is not None else res.schedule_order:
        sig = signature(res, s, budget)
        if sig:
            groups.setdefault(sig, []).append(s)
    df = res.finished()
    rows = []
    for members in groups.values():
        d = df[(df["schedule"] == members[0]) & (df["budget"] == budget)]
        rows.append(Row(tuple(members), {int(k): float(v) for k, v in
                                         zip(d["seed"], d["test_mae"])}))
    order = {s: i for i, s in enumerate(res.schedule_order)}
    return sorted(rows, key=lambda r: (r.mean, order.get(r.name, 0)))


@dataclass(frozen=True)
class BudgetVerdicts:
    """One budget of one experiment, judged."""

    budget: int
    rows: list[Row]                                    # ranked, identical runs merged
    reference: Row | None                              # the row holding the reference
    judgements: dict[tuple[str, ...], Judgement]       # every other row with shared seeds
    best: BestSet | None                               # by row name (``Row.name``)
    judging: Judging

    @property
    def seeds(self) -> int:
        return max((len(r.values) for r in self.rows), default=0)

    @property
    def m(self) -> int:
        return sum(j.n >= 2 for j in self.judgements.values())

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if name in r.names), None)

    @property
    def spread(self) -> float | None:
        """Pooled per-seed spread of the table's log ratios against the reference, or over
        all pairs where there is no reference."""
        if self.reference is not None and self.judgements:
            return pooled_sd([log_ratios(r.values, self.reference.values) for r in self.rows
                              if r is not self.reference])
        pairs = [log_ratios(b.values, a.values) for i, a in enumerate(self.rows)
                 for b in self.rows[i + 1:]]
        return pooled_sd(pairs)

    @property
    def needed(self) -> int | None:
        sd = self.spread
        if sd is None:
            return None
        return seeds_to_resolve(sd, max(1, self.m or len(self.rows) - 1), self.judging.margin,
                                self.judging.alpha)


def judge_budget(res: Results, budget: int, judging: Judging) -> BudgetVerdicts:
    """The budget's table against ``judging.reference`` and its best set."""
    rows = merged_rows(res, budget)
    reference = next((r for r in rows if judging.reference in r.names), None)
    judgements: dict[tuple[str, ...], Judgement] = {}
    if reference is not None:
        others = [r for r in rows if r is not reference
                  and set(r.values) & set(reference.values)]
        judged = judge_table([log_ratios(r.values, reference.values) for r in others],
                             judging.margin, judging.alpha)
        judgements = {r.names: j for r, j in zip(others, judged)}
    best = best_set({r.name: r.values for r in rows}, judging.margin, judging.alpha)
    return BudgetVerdicts(budget, rows, reference, judgements, best, judging)


# -- words --------------------------------------------------------------------------------------
def best_set_text(v: BudgetVerdicts) -> str:
    """``best: `A`; not separable from `B` (equivalent within ±2 %), `C` (inconclusive
    [...])``, or why there is no verdict."""
    if v.best is None:
        return (f"only {v.rows[0].label} ran" if v.rows else "no finished run")
    best = v.row(v.best.best)
    if v.best.n < 3:
        return (f"lowest mean: {best.label}; {'one seed' if v.best.n < 2 else 'two seeds'}: "
                "no verdict on which is best")
    if v.best.alone:
        return f"best: {best.label}, better than every other schedule"
    members = ", ".join(f"{v.row(s).label} ({j.text()})" for s, j in v.best.members.items())
    return f"best: {best.label}; not separable from {members}"


def counts_text(v: BudgetVerdicts) -> str:
    """``better: `A`, `B`; equivalent within ±2 %: `C`; inconclusive: `D``` (each row's
    verdict against the reference, grouped)."""
    groups: dict[str, list[str]] = {}
    for names, j in v.judgements.items():
        key = j.text() if j.word != "inconclusive" else "inconclusive"
        groups.setdefault(key, []).append(codes(names))
    order = ["better", f"equivalent within ±{margin_text(v.judging.margin)}", "inconclusive",
             "worse"]
    keys = sorted(groups, key=lambda k: order.index(k) if k in order else len(order))
    return "; ".join(f"{k}: {', '.join(groups[k])}" for k in keys) or "no comparison"


def baselines_text(res: Results, v: BudgetVerdicts, row: Row) -> str:
    """Whether ``row`` (the best) beats the historical average and persistence on test, on
    how many seeds and by how much; said plainly when no trained schedule beats one."""
    beats, misses, nobody = [], [], []
    lowest = min(r.mean for r in v.rows)
    n = len(row.values)
    for name, label in BASELINE_LABELS.items():
        value = baseline(res, name)
        if value is None:
            continue
        what = f"{'the ' if label != 'persistence' else ''}{label} ({f3(value)})"
        wins = sum(x < value for x in row.values.values())
        if lowest >= value:
            nobody.append(what)
        elif row.mean < value:
            seeds = ("its one seed" if n == 1 else "every seed" if wins == n
                     else f"{wins} of {n} seeds")
            beats.append(f"{what} by {100 * (value - row.mean) / value:.1f} % ({seeds})")
        else:
            misses.append(what)
    sentences = []
    if beats:
        sentences.append(f"{row.label} beats " + " and ".join(beats))
    if misses:
        sentences.append(f"{row.label} does not beat " + " or ".join(misses)
                         + ", which another schedule does")
    if nobody:
        sentences.append("**no trained schedule beats " + " or ".join(nobody)
                         + f"**; the lowest mean reaches {f3(lowest)}")
    return ". ".join(sentences)


def seeds_command(res: Results, judging: Judging, seeds: int) -> str:
    """The command that trains the missing seeds (the finished ones are reused)."""
    profile = judging.profile or "PROFILE"
    experiment = "" if judging.profile == res.name else f" --experiment {md_text(res.name)}"
    return f"python -m bench run --profile {md_text(profile)}{experiment} --seeds {seeds}"


def needed_text(res: Results, v: BudgetVerdicts) -> str:
    """Seeds needed to resolve ±δ for this table, with the command that adds them."""
    sd, needed = v.spread, v.needed
    margin = margin_text(v.judging.margin)
    if sd is None:
        return f"Seeds needed to resolve ±{margin}: unknown (one seed gives no spread)."
    head = (f"Seeds needed to resolve ±{margin} in this table: "
            + (f"**{needed}**" if needed else "more than 1000")
            + f" (the simultaneous interval at most {margin} wide with 80 % probability, "
            f"whatever the true differences; pooled per-seed spread {100 * sd:.2f} %, "
            f"m = {max(1, v.m or len(v.rows) - 1)}).")
    if needed is None:
        return head
    if needed <= v.seeds:
        return head + f" This table has {v.seeds}."
    return head + f" `{seeds_command(res, v.judging, needed)}` adds them and reuses the " \
                  "finished seeds."


def answer_line(res: Results, v: BudgetVerdicts, tuned: bool = False) -> str:
    """One budget's answer: the best set (or the recommendation), the margin, the seeds, the
    reference comparisons, the baselines."""
    n = v.seeds
    what = "each schedule tuned, " if tuned else ""
    head = (f"**{v.budget} epochs** ({what}{n} seed{'s' if n != 1 else ''}, margin "
            f"±{margin_text(v.judging.margin)})")
    if not v.rows:
        return f"- {head}: no finished run."
    if v.best is not None and v.best.alone:
        body = f"**use {v.row(v.best.best).label}**: better than every other schedule " \
               f"(all {v.best.pairs} pairs, paired t, Holm)"
    else:
        body = best_set_text(v)
        if v.best is not None and v.best.n >= 3:
            body += f" (all {v.best.pairs} pairs, Holm)"
    top = v.row(v.best.best) if v.best is not None else v.rows[0]
    parts = [f"- {head}: {body}."]
    if v.reference is not None and v.judgements and n >= 3:
        parts.append(f"Against the reference {v.reference.label}: {counts_text(v)}.")
    elif v.reference is None:
        parts.append(f"The reference {code(v.judging.reference)} did not run here.")
    base = baselines_text(res, v, top)
    if base:
        parts.append(f"{base}.")
    if v.needed is not None and v.needed > n and not (v.best is not None and v.best.alone):
        parts.append(f"To resolve ±{margin_text(v.judging.margin)}: {v.needed} seeds.")
    return " ".join(parts)


def merged_note(rows: list[Row]) -> str:
    """A sentence naming the merged rows, or empty."""
    merged = [r for r in rows if len(r.names) > 1]
    if not merged:
        return ""
    return ("Identical runs are one row: " + "; ".join(r.label for r in merged)
            + " (the same per-seed records), ranked and counted once.")


def finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x)

"""The tuning note's case study: its claims checked, and the 2 × 2 ablation that separates
the schedule from the lr and weight-decay change. Sections are empty when the experiment
lacks the schedules they need.

A claim about a difference is judged on its paired t 95 % interval (one claim, no family):
**confirmed** when the interval lies beyond the claimed size, **refuted** when it excludes
it (with the one-sided p of the claimed size), **undecided** otherwise; one seed gives no
test and two seeds no verdict. Claims about ranks use the best set, claims about speed a
paired test of the per-seed speed-up where every seed reaches the target; otherwise they say
"observed". In a tuned experiment the claims are judged on the tuned runs, and a row made
from the schedules' own settings says so.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from bench.report.markdown import f3, lr_text, md_table, p_text, pct
from bench.report.results import Results, curve, per_seed
from bench.report.settings import Judging
from bench.report.stats import (
    change,
    epochs_to_reach,
    intervals,
    judge_table,
    log_ratios,
    margin_text,
)
from bench.report.verdicts import BudgetVerdicts, headline_view

REFERENCE = "plateau"  # the tuning note's original configuration
PROPOSAL = "multistep"  # the note's proposal
ABLATION = {  # (schedule, optimizer settings) -> schedule name
    ("Plateau", "lr 5e-4, wd 0"): "plateau",
    ("Plateau", "lr 1e-3, wd 5e-4"): "plateau_lr1e-3_wd5e-4",
    ("MultiStepLR", "lr 5e-4, wd 0"): "multistep_lr5e-4_wd0",
    ("MultiStepLR", "lr 1e-3, wd 5e-4"): "multistep",
}
NOTE_PREDICTIONS = {30: (4.6, 4.8), 60: (4.3, 4.5), 100: (4.0, 4.2)}
CLAIMED_GAIN = -0.20      # "20–25 % better": at least 20 % lower MAE
CLAIMED_SPEEDUP = 2.0
STALL = 0.01              # "stalls": changes by less than 1 % after epoch 20
LEVEL = 0.95


def interval_of(d: np.ndarray) -> tuple[float, float] | None:
    """Paired t 95 % interval of a mean log ratio; None for fewer than two seeds."""
    if len(d) < 2:
        return None
    lo, hi = intervals(d, LEVEL)
    return float(lo), float(hi)


def gain_text(d: np.ndarray) -> str:
    """A per-seed log-ratio claim as measured: change, 95 % interval, wins."""
    bounds = interval_of(d)
    return (f"{pct(float(change(d.mean())))} "
            + ("(one seed, no interval)" if bounds is None else
               f"[{pct(float(change(bounds[0])))}, {pct(float(change(bounds[1])))}] "
               "(paired t 95 %)")
            + f", wins {int((d < 0).sum())}/{len(d)}")


def gain_verdict(d: np.ndarray, claimed: float = CLAIMED_GAIN) -> str:
    """Verdict on "at least 20 % better": the interval against the claimed size."""
    n = len(d)
    if n < 2:
        return "one seed: no test"
    if n < 3:
        return "two seeds: no verdict"
    lo, hi = (float(change(x)) for x in interval_of(d))
    size = math.log1p(claimed)
    if hi <= claimed:
        return "confirmed: the interval lies beyond the claimed size"
    if lo > claimed:
        p = float(stats.ttest_1samp(d - size, 0.0, alternative="greater").pvalue)
        worse = ": MultiStepLR is worse" if lo > 0 else ": the gain is smaller"
        return f"refuted{worse} (the interval excludes {pct(claimed)}; one-sided p {p_text(p)})"
    return f"undecided: the interval includes {pct(claimed)}"


def _tuned_names(res: Results, budget: int) -> str | None:
    """The settings MultiStepLR and Plateau were tuned to, in words; None if either had no
    choice."""
    chosen = (res.tuning or {}).get("schedules", {})
    picks = [chosen.get(s, {}).get(str(budget), {}).get("chosen") for s in (PROPOSAL, REFERENCE)]
    if not all(isinstance(p, str) for p in picks):
        return None
    settings = res.tuning.get("settings", {})
    words = []
    for name, pick in zip((PROPOSAL, REFERENCE), picks):
        lr = settings.get(pick, {}).get("lr")
        words.append(f"{name} lr {lr:g}" if isinstance(lr, (int, float)) else name)
    return ", ".join(words)


def _lr_at(res: Results, schedule: str, epoch: int) -> float | None:
    df = res.epochs[(res.epochs["schedule"] == schedule) & (res.epochs["epoch"] == epoch)]
    if df.empty:
        return None
    return float(df.groupby("budget")["lr"].mean().iloc[-1])


def speedup_claim(res: Results, budget: int) -> tuple[str, str] | None:
    """"MultiStepLR converges 2× faster": epochs to a validation target (within 1 % of the
    worse of the two best mean validation MAEs), plateau's over multistep's. Tested per seed
    (paired t interval of the log speed-up) where every seed of both reaches the target;
    otherwise observed on the mean curves."""
    prop = curve(res, PROPOSAL, budget, "val_mae")
    ref = curve(res, REFERENCE, budget, "val_mae")
    if not prop or not ref:
        return None
    target = 1.01 * max(min(ref), min(prop))
    e_ref, e_prop = epochs_to_reach(ref, target), epochs_to_reach(prop, target)
    observed = e_ref / e_prop if e_ref and e_prop else None
    measured = (f"epochs to a val MAE of {f3(target)} (within 1 % of the worse best), mean "
                f"curves: plateau {e_ref}, multistep {e_prop}"
                + (f" → {observed:.2f}×" if observed else ""))
    seeds = sorted(set(per_seed(res, PROPOSAL, budget)) & set(per_seed(res, REFERENCE, budget)))
    reach = [(epochs_to_reach(curve(res, REFERENCE, budget, "val_mae", s), target),
              epochs_to_reach(curve(res, PROPOSAL, budget, "val_mae", s), target))
             for s in seeds]
    if observed is None:
        return measured, "not measured (target not reached)"
    word = "observed" if observed >= CLAIMED_SPEEDUP else "observed: short of 2×"
    if len(reach) < 3 or not all(a and b for a, b in reach):
        why = ("fewer than 3 seeds" if len(reach) < 3
               else "not every seed reaches the target")
        return measured, f"{word} ({observed:.2f}× on the mean curves; {why}: no test)"
    d = np.log([a / b for a, b in reach])
    lo, hi = (math.exp(x) for x in interval_of(d))
    measured += f"; per seed {math.exp(d.mean()):.2f}× [{lo:.2f}×, {hi:.2f}×] (paired t 95 %)"
    if lo >= CLAIMED_SPEEDUP:
        return measured, "confirmed: the interval lies at or above 2×"
    if hi <= 1:
        return measured, "refuted: not faster"
    if hi < CLAIMED_SPEEDUP:
        return measured, ("refuted: faster, but less than 2×" if lo > 1 else
                          "refuted: less than 2×")
    return measured, "undecided: the interval includes 2×"


def rank_claim(v: BudgetVerdicts) -> tuple[str, str] | None:
    """"MultiStepLR ranks first", judged by the best set, or observed."""
    row = v.row(PROPOSAL)
    if row is None:
        return None
    pos = v.rows.index(row) + 1
    measured = f"rank {pos} of {len(v.rows)}" + (
        f" ({row.label})" if len(row.names) > 1 else "") + f"; first: {v.rows[0].label}"
    b = v.best
    if b is None or b.n < 3:
        return measured, f"observed rank {pos} (too few seeds for a verdict)"
    if row.name in b.beaten:
        return measured, (f"refuted: {v.row(b.beaten[row.name]).label} is better (all "
                          "pairs, Holm)")
    if b.alone and b.best == row.name:
        return measured, "confirmed: better than every other schedule (all pairs, Holm)"
    members = [b.best, *b.members]
    return measured, (f"undecided: observed rank {pos}; not separable from the best (best "
                      f"set {', '.join(v.row(s).label for s in members)})")


def stall_claim(res: Results, budget: int) -> tuple[str, str] | None:
    """"Under Plateau test MAE stalls after epoch 20": the per-seed change of test MAE from
    epoch 20 to the last, judged by the rule with a margin of 1 %."""
    vc = curve(res, REFERENCE, budget, "test_mae")
    if len(vc) <= 21:
        return None
    seeds = sorted(per_seed(res, REFERENCE, budget))
    d = []
    for s in seeds:
        c = curve(res, REFERENCE, budget, "test_mae", s)
        if len(c) > 21:
            d.append(math.log(c[-1] / c[20]))
    d = np.array(d)
    measured = (f"test MAE {f3(vc[20])} at epoch 20 → {f3(vc[-1])} at epoch {len(vc) - 1} "
                f"(mean curve); per seed {gain_text(d)}")
    if len(d) < 3:
        return measured, ("observed: " + ("still improving" if vc[-1] < vc[20] * (1 - STALL)
                                          else "gets worse" if vc[-1] > vc[20] * (1 + STALL)
                                          else "stalls") + " (too few seeds for a verdict)")
    j = judge_table([d], STALL, robustness=False)[0]
    word = {"better": "refuted: still improving",
            "worse": "refuted: it gets worse (overfits)",
            "equivalent": f"confirmed: changes by less than {margin_text(STALL)}"}.get(
        j.word, f"undecided: {j.interval_text()}")
    return measured, word


def claims_section(res: Results, view: Results | None = None,
                   verdicts: dict[int, BudgetVerdicts] | None = None) -> str:
    """The tuning note's claims beside the measurements, each with a verdict. ``view`` is the
    tuned view of a tuned experiment (the headline), ``res`` its own-settings runs."""
    if view is None:
        view = headline_view(res)
    tuned = view is not res
    verdicts = verdicts or {}
    own_label = " (own settings)" if tuned else ""
    rows = []
    own = {s for s in res.schedule_order if any(per_seed(res, s, b) for b in res.budgets)}
    have = set(view.schedule_order)
    longest = max(view.budgets) if view.budgets else None
    if longest is None:
        return ""

    if PROPOSAL in own:
        expect = {29: 1e-3, 30: 1e-4, 60: 1e-5, 90: 1e-6}
        got = {e: _lr_at(res, PROPOSAL, e) for e in expect}
        measured = ", ".join(f"ep {e}: {lr_text(v)}" for e, v in got.items() if v is not None)
        ok = all(v is not None and math.isclose(v, expect[e], rel_tol=1e-6)
                 for e, v in got.items())
        partial = any(v is None for v in got.values())
        rows.append(["MultiStepLR lr is 1e-3 for epochs 0–29, 1e-4 from 30, 1e-5 from 60, "
                     "1e-6 from 90" + own_label, measured or "–",
                     "confirmed (the recorded lr path)" if ok else
                     ("not measured (budget too short)" if partial else "refuted")])
        if 30 in res.budgets:
            lr30 = per_seed(res, PROPOSAL, 30, "final_lr")
            never = lr30 and all(math.isclose(v, 1e-3) for v in lr30.values())
            rows.append(["a 30-epoch MultiStepLR run decays at epoch 30 (\"lr drops to 1e-4 at "
                         "epoch 30, watch the log\")" + own_label,
                         "last epoch of a 30-epoch run is 29; lr stays "
                         f"{lr_text(next(iter(lr30.values()))) if lr30 else '?'} throughout",
                         "refuted: the milestone lies outside the budget" if never else
                         "confirmed"])

    if REFERENCE in own:
        lr20 = _lr_at(res, REFERENCE, 20)
        lr0 = _lr_at(res, REFERENCE, 0)
        if lr20 is not None and lr0:
            ratio = lr20 / lr0
            rows.append(["under Plateau the lr collapses to near zero around epoch 20"
                         + own_label,
                         f"lr at epoch 20: {lr_text(lr20)} ({100 * ratio:.0f} % of "
                         f"{lr_text(lr0)}, mean over seeds)",
                         "confirmed (the recorded lr)" if ratio <= 0.01 else
                         ("refuted: reduced, not near zero" if ratio < 1 else
                          "refuted: not reduced")])
    if REFERENCE in have:
        stall = stall_claim(view, longest)
        if stall:
            rows.append(["under Plateau test MAE stalls after epoch 20"
                         + (" (each tuned)" if tuned else ""), *stall])

    if REFERENCE in own and PROPOSAL in own:
        d = log_ratios(per_seed(res, PROPOSAL, longest), per_seed(res, REFERENCE, longest))
        if len(d):
            rows.append([f"MultiStepLR is 20–25 % better than Plateau at {longest} epochs"
                         + own_label, gain_text(d), gain_verdict(d)])
    if tuned and REFERENCE in have and PROPOSAL in have:
        d = log_ratios(per_seed(view, PROPOSAL, longest), per_seed(view, REFERENCE, longest))
        words = _tuned_names(res, longest)
        if len(d):
            rows.append([f"MultiStepLR is 20–25 % better than Plateau at {longest} epochs, "
                         "each tuned on the same lr search space",
                         gain_text(d) + (f"; chosen {words}" if words else ""),
                         gain_verdict(d)])
    if REFERENCE in have and PROPOSAL in have:
        speed = speedup_claim(view, longest)
        if speed:
            rows.append(["MultiStepLR converges 2× faster" + (" (each tuned)" if tuned else ""),
                         *speed])
        for b in sorted(view.budgets):
            if b in verdicts:
                claim = rank_claim(verdicts[b])
                if claim:
                    rows.append([f"MultiStepLR ranks first ({b} epochs"
                                 + (", each tuned)" if tuned else ")"), *claim])
        for b, (lo, hi) in NOTE_PREDICTIONS.items():
            vals = per_seed(view, PROPOSAL, b) if b in view.budgets else {}
            if vals:
                rows.append([f"MultiStepLR test MAE {lo}–{hi} after {b} epochs (METR-LA)",
                             *mae_range_claim(view, list(vals.values()), lo, hi)])
    if not rows:
        return ""
    return ("## The tuning note's claims, checked\n\n"
            "Each claim of the note next to what this experiment measured"
            + (", on the tuned runs unless a row says *own settings*" if tuned else "")
            + ". A claim of a difference is judged on its paired t 95 % interval over seeds: "
            "*confirmed* when the interval lies beyond the claimed size, *refuted* when it "
            "excludes it (with the one-sided p of the claimed size), *undecided* otherwise; "
            "one seed gives no test, two seeds no verdict. Claims about ranks are judged by "
            "the best set (all pairs, Holm) and about speed by a paired test of the per-seed "
            "speed-up; where no test supports them they say *observed*.\n\n"
            + md_table(["claim", "measured", "verdict"], rows, "lll"))


def mae_range_claim(res: Results, values: list[float], lo: float, hi: float
                    ) -> tuple[str, str]:
    """A predicted test MAE range against the t 95 % interval of the mean over seeds."""
    mean = float(np.mean(values))
    real = res.experiment.get("dataset", {}).get("name") == "metr-la"
    if not real:
        return f3(mean), "not comparable: other data than METR-LA"
    if len(values) < 3:
        return f3(mean), "observed (too few seeds for a verdict)"
    ci = stats.ttest_1samp(values, mean).confidence_interval(LEVEL)
    measured = f"{f3(mean)} [{f3(ci.low)}, {f3(ci.high)}] (t 95 %)"
    if lo <= ci.low and ci.high <= hi:
        return measured, "confirmed"
    if ci.high < lo or ci.low > hi:
        return measured, "refuted: the interval lies outside the range"
    return measured, "undecided: the interval overlaps the range"


def ablation_section(res: Results, judging: Judging | None = None) -> str:
    """The 2 × 2 of schedule and optimizer settings, with each contrast judged by the rule
    (Holm and simultaneous intervals over the five contrasts of a budget)."""
    judging = judging or Judging()
    if not all(name in res.schedule_order for name in ABLATION.values()):
        return ("## What the gain is made of\n\nRun the `ablation` group "
                "(`--schedules ablation`) to separate the schedule from the lr and weight decay.")
    label = " (own settings)" if res.tuning else ""
    parts = ["## What the gain is made of: schedule versus lr and weight decay" + label,
             "The note changed three things at once. The 2 × 2 below crosses the schedule "
             "(Plateau, MultiStepLR) with the optimizer settings (lr 5e-4 without weight "
             "decay, as originally; lr 1e-3 with weight decay 5e-4, as proposed), all on "
             "final test MAE (negative is better). The note's change is the diagonal; the "
             "schedule effect holds the settings fixed, the settings effect holds the "
             "schedule fixed. Each contrast is paired by seed and judged by the report's "
             f"rule (margin ±{margin_text(judging.margin)}, Holm and simultaneous intervals "
             "over the five contrasts)."]
    settings = ["lr 5e-4, wd 0", "lr 1e-3, wd 5e-4"]
    contrasts = [
        ("the note's change (plateau → multistep)", ("MultiStepLR", settings[1]),
         ("Plateau", settings[0])),
        ("schedule effect at the original settings", ("MultiStepLR", settings[0]),
         ("Plateau", settings[0])),
        ("schedule effect at the proposed settings", ("MultiStepLR", settings[1]),
         ("Plateau", settings[1])),
        ("settings effect under Plateau", ("Plateau", settings[1]), ("Plateau", settings[0])),
        ("settings effect under MultiStepLR", ("MultiStepLR", settings[1]),
         ("MultiStepLR", settings[0]))]
    for b in res.budgets:
        vals = {k: per_seed(res, v, b) for k, v in ABLATION.items()}
        m = {k: np.mean(list(v.values()) or [np.nan]) for k, v in vals.items()}
        rows = [[sched] + [f3(m[(sched, st)]) for st in settings]
                for sched in ("Plateau", "MultiStepLR")]
        diffs = [log_ratios(vals[a], vals[c]) for _, a, c in contrasts]
        # Two cells with the same runs (the same lr path within this budget) are no
        # estimate: they are named, and left out of the family.
        same = [len(d) > 0 and not np.any(d) for d in diffs]
        judged = iter(judge_table([d for d, z in zip(diffs, same) if not z], judging.margin,
                                  judging.alpha, robustness=False))
        table = []
        for (name, a, c), z in zip(contrasts, same):
            if z:
                table.append([name, "0", "–", "–", "identical runs (the same lr path)"])
                continue
            j = next(judged)
            table.append([name, f"{m[a] - m[c]:+.3f}", pct(j.change) if j.n else "–",
                          j.interval_text(), j.text()])
        parts.append(
            f"### {b} epochs\n\n"
            + md_table(["schedule \\ settings"] + settings, rows)
            + "\n\n"
            + md_table(["contrast", "MAE difference", "change", "simultaneous 95 % interval",
                        "verdict"], table, "lrrrl"))
    return "\n\n".join(parts)


"""The tuning note's case study: its claims checked, every schedule against its original
configuration (``plateau``) paired by seed, and the 2 × 2 ablation that separates the
schedule from the lr and weight-decay change. Sections are empty when the experiment lacks
the schedules they need.
"""

from __future__ import annotations

import math

import numpy as np

from bench.report.markdown import f3, lr_text, md_table, pct
from bench.report.results import Results, curve, per_seed, ranking, tuned_view
from bench.report.stats import (
    VERDICT_RULE,
    epochs_to_reach,
    holm,
    min_seeds,
    paired_comparison,
    verdict,
)

REFERENCE = "plateau"  # the tuning note's original configuration
PROPOSAL = "multistep"  # the note's proposal
ABLATION = {  # (schedule, optimizer settings) -> schedule name
    ("Plateau", "lr 5e-4, wd 0"): "plateau",
    ("Plateau", "lr 1e-3, wd 5e-4"): "plateau_lr1e-3_wd5e-4",
    ("MultiStepLR", "lr 5e-4, wd 0"): "multistep_lr5e-4_wd0",
    ("MultiStepLR", "lr 1e-3, wd 5e-4"): "multistep",
}
NOTE_PREDICTIONS = {30: (4.6, 4.8), 60: (4.3, 4.5), 100: (4.0, 4.2)}


def interval_text(cmp: dict) -> str:
    """A paired comparison's t interval, or "–" where one seed gives none."""
    return "–" if cmp["lo"] is None else f"[{pct(cmp['lo'])}, {pct(cmp['hi'])}]"


def p_text(p: float | None, exact: bool = True) -> str:
    return "–" if p is None else ("" if exact else "≈") + f"{p:.3g}"


def power_text(cmp: dict) -> str:
    if cmp["n_for_power"] is not None:
        return str(cmp["n_for_power"])
    return "> 1000" if cmp["power_beyond_max"] else "–"


def comparison_section(res: Results) -> str:
    if REFERENCE not in res.schedule_order:
        return ("## Against the original configuration\n\nThe reference schedule "
                f"`{REFERENCE}` is not in this experiment, so no paired comparison is made.")
    parts = ["## Against the original configuration (`plateau`), paired by seed",
             "Relative change of final test MAE against `plateau` with the same seed "
             "(negative is better): its mean over seeds with the paired t 95 % interval "
             "(none for one seed), the seeds on which the schedule beat `plateau`, the exact "
             "two-sided sign-flip permutation p of the mean change (≈: from 9999 random sign "
             "patterns, beyond 16 seeds), that p Holm-adjusted over the comparisons of the "
             "budget's table, the verdict, and the seeds a paired t test would need to detect "
             "the observed change with 80 % power at the observed spread (the sign-flip "
             f"verdict needs {min_seeds()} seeds whatever that number). {VERDICT_RULE}"]
    for b in res.budgets:
        ref = per_seed(res, REFERENCE, b)
        ranked = ranking(res, b)
        cmps = {s: paired_comparison(per_seed(res, s, b), ref) for s, _ in ranked
                if s != REFERENCE}
        names = [s for s, c in cmps.items() if c is not None]
        adjusted = dict(zip(names, holm([cmps[s]["p"] for s in names])))
        rows = []
        for rank, (s, mean) in enumerate(ranked, 1):
            cmp = cmps.get(s)
            if s == REFERENCE or cmp is None:
                rows.append([str(rank), f"`{s}`", f3(mean),
                             "reference" if s == REFERENCE else "no shared seeds"]
                            + ["–"] * 6)
                continue
            rows.append([str(rank), f"`{s}`", f3(mean), pct(cmp["mean"]), interval_text(cmp),
                         f"{cmp['wins']}/{cmp['n']}", p_text(cmp["p"], cmp["exact"]),
                         p_text(adjusted[s], cmp["exact"]),
                         verdict(cmp["mean"], adjusted[s], cmp["n"], comparisons=len(names)),
                         power_text(cmp)])
        parts.append(f"### {b} epochs (ranked by mean final test MAE)\n\n"
                     + md_table(["rank", "schedule", "test MAE", "vs plateau",
                                 "95 % t interval", "wins", "p", "Holm p", "verdict",
                                 "seeds for 80 % power"], rows, "llrrrrrrlr"))
    return "\n\n".join(parts)


def ablation_section(res: Results) -> str:
    if not all(name in res.schedule_order for name in ABLATION.values()):
        return ("## What the gain is made of\n\nRun the `ablation` group "
                "(`--schedules ablation`) to separate the schedule from the lr and weight decay.")
    parts = ["## What the gain is made of: schedule versus lr and weight decay",
             "The note changed three things at once. The 2 × 2 below crosses the schedule "
             "(Plateau, MultiStepLR) with the optimizer settings (lr 5e-4 without weight "
             "decay, as originally; lr 1e-3 with weight decay 5e-4, as proposed), all on mean "
             "final test MAE (negative is better). The note's change is the diagonal; the "
             "schedule effect holds the settings fixed, the settings effect holds the "
             "schedule fixed."]
    settings = ["lr 5e-4, wd 0", "lr 1e-3, wd 5e-4"]
    for b in res.budgets:
        m = {k: np.mean(list(per_seed(res, v, b).values()) or [np.nan])
             for k, v in ABLATION.items()}
        rows = [[sched] + [f3(m[(sched, st)]) for st in settings]
                for sched in ("Plateau", "MultiStepLR")]
        total = m[("MultiStepLR", settings[1])] - m[("Plateau", settings[0])]
        sched_eff = [m[("MultiStepLR", st)] - m[("Plateau", st)] for st in settings]
        set_eff = [m[(sc, settings[1])] - m[(sc, settings[0])] for sc in ("Plateau", "MultiStepLR")]
        parts.append(
            f"### {b} epochs\n\n"
            + md_table(["schedule \\ settings"] + settings, rows)
            + f"\n\nThe note's change (plateau → multistep): **{total:+.3f}**. Schedule effect "
            f"(Plateau → MultiStepLR): {sched_eff[0]:+.3f} at the original settings, "
            f"{sched_eff[1]:+.3f} at the proposed ones. Settings effect (original → proposed): "
            f"{set_eff[0]:+.3f} under Plateau, {set_eff[1]:+.3f} under MultiStepLR.")
    return "\n\n".join(parts)


def _lr_at(res: Results, schedule: str, epoch: int) -> float | None:
    df = res.epochs[(res.epochs["schedule"] == schedule) & (res.epochs["epoch"] == epoch)]
    if df.empty:
        return None
    return float(df.groupby("budget")["lr"].mean().iloc[-1])


def convergence_verdict(speed: float | None) -> str:
    """Verdict on "2x faster": the measured ratio of epochs-to-target, plateau over multistep."""
    if speed is None:
        return "not measured (target not reached)"
    if speed >= 2:
        return "confirmed"
    if speed >= 1.5:
        return f"partly: faster, {speed:.2f}× not 2×"
    return "refuted: not faster" if speed <= 1 else f"refuted: only {speed:.2f}× faster"


def gain_text(cmp: dict) -> str:
    return (f"{pct(cmp['mean'])} "
            + ("(one seed, no interval)" if cmp["lo"] is None else
               f"[{pct(cmp['lo'])}, {pct(cmp['hi'])}] (paired t 95 %)")
            + f", wins {cmp['wins']}/{cmp['n']}")


def _tuned_gain(res: Results, budget: int) -> tuple[dict, str] | None:
    """MultiStepLR against Plateau with each at the setting its tuning chose (evaluation
    seeds only), and the chosen settings in words; None for an untuned experiment."""
    chosen = (res.tuning or {}).get("schedules", {})
    picks = [chosen.get(s, {}).get(str(budget), {}).get("chosen") for s in (PROPOSAL, REFERENCE)]
    if not all(picks):
        return None
    view = tuned_view(res)
    cmp = paired_comparison(per_seed(view, PROPOSAL, budget), per_seed(view, REFERENCE, budget))
    if cmp is None:
        return None
    settings = res.tuning.get("settings", {})
    words = [f"{name} lr {settings.get(pick, {}).get('lr', float('nan')):g}"
             for name, pick in zip(("multistep", "plateau"), picks)]
    return cmp, ", ".join(words)


def gain_verdict(cmp: dict, claimed: float = -0.20) -> str:
    """Verdict on "20–25 % better": the paired t interval against the claimed −20 %, judged
    only with enough seeds for the sign-flip test to decide (``min_seeds``)."""
    if cmp["n"] < 2:
        return "one seed: no test"
    if cmp["n"] < min_seeds():
        return "too few seeds to tell" + ("; the t interval lies above −20 %"
                                          if cmp["lo"] > claimed else "")
    if cmp["hi"] <= claimed:
        return "confirmed"
    if cmp["lo"] > claimed:
        return "refuted" + (": MultiStepLR is worse" if cmp["lo"] > 0 else
                            ": the gain is smaller")
    return "undecided (interval includes −20 %)"


def claims_section(res: Results) -> str:
    """The tuning note's claims beside the measurements, each with a verdict."""
    rows = []
    have = set(res.schedule_order)
    longest = max(res.budgets)

    if PROPOSAL in have:
        expect = {29: 1e-3, 30: 1e-4, 60: 1e-5, 90: 1e-6}
        got = {e: _lr_at(res, PROPOSAL, e) for e in expect}
        measured = ", ".join(f"ep {e}: {lr_text(v)}" for e, v in got.items() if v is not None)
        ok = all(v is not None and math.isclose(v, expect[e], rel_tol=1e-6)
                 for e, v in got.items())
        partial = any(v is None for v in got.values())
        rows.append(["MultiStepLR lr is 1e-3 for epochs 0–29, 1e-4 from 30, 1e-5 from 60, "
                     "1e-6 from 90", measured or "–",
                     "confirmed" if ok else ("not measured (budget too short)" if partial
                                             else "refuted")])
        if 30 in res.budgets:
            lr30 = per_seed(res, PROPOSAL, 30, "final_lr")
            never = lr30 and all(math.isclose(v, 1e-3) for v in lr30.values())
            rows.append(["a 30-epoch MultiStepLR run decays at epoch 30 (\"lr drops to 1e-4 at "
                         "epoch 30, watch the log\")",
                         "last epoch of a 30-epoch run is 29; lr stays "
                         f"{lr_text(next(iter(lr30.values()))) if lr30 else '?'} throughout",
                         "refuted: the milestone lies outside the budget" if never else
                         "confirmed"])

    if REFERENCE in have:
        lr20 = _lr_at(res, REFERENCE, 20)
        lr0 = _lr_at(res, REFERENCE, 0)
        if lr20 is not None and lr0:
            ratio = lr20 / lr0
            rows.append(["under Plateau the lr collapses to near zero around epoch 20",
                         f"lr at epoch 20: {lr_text(lr20)} ({100 * ratio:.0f} % of "
                         f"{lr_text(lr0)}, mean over seeds)",
                         "confirmed" if ratio <= 0.01 else
                         ("partly: reduced, not near zero" if ratio < 1 else "refuted")])
            vc = curve(res, REFERENCE, longest, "test_mae")
            if len(vc) > 21:
                gain = vc[20] - vc[-1]
                rows.append(["under Plateau test MAE stalls after epoch 20",
                             f"test MAE {f3(vc[20])} at epoch 20 → {f3(vc[-1])} at epoch "
                             f"{len(vc) - 1} ({gain:+.3f})",
                             "confirmed" if abs(gain) < 0.01 * vc[20] else
                             ("refuted: still improving" if gain > 0 else
                              "refuted: it gets worse (overfits)")])

    if REFERENCE in have and PROPOSAL in have:
        for b in sorted(res.budgets):
            cmp = paired_comparison(per_seed(res, PROPOSAL, b), per_seed(res, REFERENCE, b))
            if cmp is None:
                continue
            if b == longest:
                claim = f"MultiStepLR is 20–25 % better than Plateau at {b} epochs"
                rows.append([claim, gain_text(cmp), gain_verdict(cmp)])
                tuned = _tuned_gain(res, b)
                if tuned is not None:
                    rows.append([f"{claim}, each tuned on the same lr search space",
                                 gain_text(tuned[0]) + f"; chosen {tuned[1]}",
                                 gain_verdict(tuned[0])])
        prop = curve(res, PROPOSAL, longest, "val_mae")
        ref = curve(res, REFERENCE, longest, "val_mae")
        if prop and ref:
            target = 1.01 * max(min(ref), min(prop))
            e_ref, e_prop = epochs_to_reach(ref, target), epochs_to_reach(prop, target)
            speed = e_ref / e_prop if e_ref and e_prop else None
            rows.append(["MultiStepLR converges 2× faster",
                         f"epochs to a val MAE of {f3(target)} (within 1 % of the worse best): "
                         f"plateau {e_ref}, multistep {e_prop}"
                         + (f" → {speed:.2f}×" if speed else ""),
                         convergence_verdict(speed)])
        for b in sorted(res.budgets):
            r = ranking(res, b)
            names = [s for s, _ in r]
            if PROPOSAL in names:
                pos = names.index(PROPOSAL) + 1
                rows.append([f"MultiStepLR ranks first ({b} epochs)",
                             f"rank {pos} of {len(names)}; first: `{names[0]}`",
                             "confirmed" if pos == 1 else "refuted"])
        for b, (lo, hi) in NOTE_PREDICTIONS.items():
            if b in res.budgets:
                vals = per_seed(res, PROPOSAL, b)
                if vals:
                    m = np.mean(list(vals.values()))
                    real = res.experiment.get("dataset", {}).get("name") == "metr-la"
                    inside = lo <= m <= hi
                    rows.append([f"MultiStepLR test MAE {lo}–{hi} after {b} epochs "
                                 "(METR-LA)", f3(m),
                                 ("confirmed" if inside else "refuted") if real else
                                 "not comparable: other data than METR-LA"])
    if not rows:
        return ""
    return ("## The tuning note's claims, checked\n\n"
            "Each claim of the note next to what this experiment measured. Means are over "
            "seeds; intervals are paired t 95 % intervals over seeds (none for one seed), and "
            f"a claim about a difference is judged only on {min_seeds()} seeds or more, the "
            "fewest on which an exact sign-flip test can reach 5 %.\n\n"
            + md_table(["claim", "measured", "verdict"], rows, "lll"))

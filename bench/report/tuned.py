"""The tuned comparison (``bench.tuning``): each schedule at the setting its own tuning runs
chose, judged on the evaluation seeds alone, beside its rank at the note's settings."""

from __future__ import annotations

import numpy as np

from bench.report.markdown import f3, md_table, pct
from bench.report.note_study import interval_text, p_text
from bench.report.results import Results, per_seed
from bench.report.stats import VERDICT_RULE, holm, paired_comparison, verdict


def setting_text(setting: dict, space: dict) -> str:
    text = f"lr {setting['lr']:g}"
    return text + (f", wd {setting['weight_decay']:g}" if space.get("weight_decay") else "")


def at_edge(setting: dict, space: dict) -> bool:
    """Whether a chosen lr is the smallest or largest of a search space of several: the best
    lr may then lie outside the space, and the schedule may be under-tuned."""
    lrs = space.get("lr") or []
    return len(lrs) > 1 and setting.get("lr") in (min(lrs), max(lrs))


def tuned_rows(res: Results, budget: int) -> list[dict]:
    """One row per tuned schedule at a budget, best mean test MAE first."""
    t = res.tuning
    rows = []
    for base in [s for s in res.order if s in t["schedules"]]:
        c = t["schedules"][base].get(str(budget))
        if not c or c["chosen"] is None:
            continue
        test = per_seed(res, c["chosen"], budget)
        own = per_seed(res, base, budget)
        rows.append({"schedule": base, "chosen": c["chosen"],
                     "setting": t["settings"].get(c["chosen"], {}),
                     "val": c["val_mae"].get(c["chosen"]), "test": test,
                     "mean": float(np.mean(list(test.values()))) if test else float("nan"),
                     "own": float(np.mean(list(own.values()))) if own else float("nan")})
    rows.sort(key=lambda r: (np.isnan(r["mean"]), r["mean"]))
    return rows


def tuned_section(res: Results) -> str:
    t = res.tuning
    if not t:
        return ""
    space = t["space"]
    grid = ", ".join(f"{v:g}" for v in space.get("lr", []))
    decay = (f" × weight decay {{{', '.join(f'{v:g}' for v in space['weight_decay'])}}}"
             if space.get("weight_decay") else " (each schedule's own weight decay)")
    parts = ["## Each schedule tuned: the same search space for every schedule",
             f"Every schedule was trained at peak lr {{{grid}}}{decay} on the tuning seeds "
             f"{t['tuning_seeds']}; per budget, the setting with the lowest mean final "
             "validation MAE over those seeds was chosen and trained on the evaluation seeds "
             f"{t['eval_seeds']}, which alone give the test numbers below (no setting is "
             "chosen on test, no tuning seed judges). *Own settings* ranks the same schedules "
             "at the settings they are defined with, on the evaluation seeds. Each schedule "
             "is compared with the best tuned schedule, paired by seed (relative change of "
             f"final test MAE; Holm over the table). {VERDICT_RULE}"]
    edges = 0
    for b in res.budgets:
        rows = tuned_rows(res, b)
        if not rows:
            continue
        own_rank = {r["schedule"]: i for i, r in enumerate(
            sorted(rows, key=lambda r: (np.isnan(r["own"]), r["own"])), 1)}
        best = rows[0]
        cmps = {r["schedule"]: paired_comparison(r["test"], best["test"]) for r in rows[1:]}
        names = [s for s, c in cmps.items() if c is not None]
        adjusted = dict(zip(names, holm([cmps[s]["p"] for s in names])))
        table = []
        for rank, r in enumerate(rows, 1):
            cmp = cmps.get(r["schedule"])
            chosen = setting_text(r["setting"], space)
            if at_edge(r["setting"], space):
                chosen += " (edge)"
                edges += 1
            head = [str(rank), f"`{r['schedule']}`", chosen,
                    f3(r["val"]), f3(r["mean"]), f"{own_rank[r['schedule']]} ({f3(r['own'])})"]
            if cmp is None:
                table.append(head + ["best" if rank == 1 else "no shared seeds", "–", "–", "–"])
                continue
            table.append(head + [pct(cmp["mean"]), interval_text(cmp),
                                 p_text(adjusted[r["schedule"]], cmp["exact"]),
                                 verdict(cmp["mean"], adjusted[r["schedule"]], cmp["n"],
                                         comparisons=len(names))])
        parts.append(f"### {b} epochs (ranked by mean final test MAE, tuned)\n\n" + md_table(
            ["rank", "schedule", "chosen", "val MAE (tuning seeds)", "test MAE",
             "own settings: rank (test MAE)", "vs best", "95 % t interval", "Holm p",
             "verdict"], table, "llllrrrrrl"))
    if edges:
        parts.append(f"{edges} chosen setting{'s' if edges > 1 else ''} marked *edge* "
                     f"{'are' if edges > 1 else 'is'} the smallest or largest lr of the space: "
                     "the best lr may lie outside it, so such a schedule may be under-tuned "
                     "and its rank is a lower bound on what tuning gives it; widen `tune.lr` "
                     "to know.")
    return "\n\n".join(parts)

"""The tuned comparison (``bench.tuning``): each schedule at the setting its own tuning runs
chose, judged on the evaluation seeds alone, beside its own settings (labelled so).

The verdicts themselves are in the report's comparison section, made from the tuned view
against the pre-declared reference; this section says what was chosen, from which space,
and where a choice may be under-tuned (at the edge of the space, or at a stated bound that
kept the space from being extended). ``tuning.json`` is read with defaults, so records
written before the space could be extended still render.
"""

from __future__ import annotations

import math

from bench.report.markdown import code, f3, md_table, pm
from bench.report.results import Results, per_seed
from bench.report.verdicts import BudgetVerdicts


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _numbers(value) -> list[float]:
    """A list of finite numbers from an untrusted record, or []."""
    if not isinstance(value, list):
        return []
    return [float(v) for v in value if _number(v)]


def lrs_text(values: list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def setting_text(setting: dict, space: dict) -> str:
    lr = setting.get("lr")
    text = f"lr {lr:g}" if _number(lr) else "lr ?"
    wd = setting.get("weight_decay")
    return text + (f", wd {wd:g}" if space.get("weight_decay") and _number(wd) else "")


def at_edge(setting: dict, space: dict) -> bool:
    """Whether a chosen lr is the smallest or largest of a search space of several: the best
    lr may then lie outside the space, and the schedule may be under-tuned."""
    lrs = space.get("lr") or []
    return len(lrs) > 1 and setting.get("lr") in (min(lrs), max(lrs))


def marks(entry: dict, setting: dict, space: dict) -> list[str]:
    """``edge`` and ``at the bound`` for a choice: from the record where it says, else from
    the space (records written before the space could be extended)."""
    out = []
    edge = entry.get("edge")
    if edge is True or (edge is None and at_edge(setting, {"lr": entry.get("lr_space")
                                                            or space.get("lr") or []})):
        out.append("edge")
    if entry.get("at_bound") is True:
        out.append("at the bound")
    return out


def tuned_section(res: Results, view: Results, verdicts: dict[int, BudgetVerdicts]) -> str:
    t = res.tuning
    if not t:
        return ""
    space = t.get("space", {})
    grid = lrs_text(_numbers(space.get("lr")))
    decay = (f" × weight decay {{{lrs_text(_numbers(space.get('weight_decay')))}}}"
             if space.get("weight_decay") else " (each schedule's own weight decay)")
    extend = t.get("extend") if isinstance(t.get("extend"), dict) else {}
    parts = ["## Each schedule tuned: the same search space for every schedule",
             f"Every schedule was trained at peak lr {{{grid}}}{decay} on the tuning seeds "
             f"{t['tuning_seeds']}"
             + (_extend_text(extend) if extend.get("on") is True else "")
             + "; per budget, the setting with the lowest mean final validation MAE over "
             f"those seeds was chosen and trained on the evaluation seeds {t['eval_seeds']}, "
             "which alone give the test numbers (no setting is chosen on test, no tuning seed "
             "judges). Rows follow the tuned ranking of the comparison section; *own "
             "settings* is each schedule at the lr and weight decay its definition names, on "
             "the same evaluation seeds (– where those runs were not trained)."]
    edges = bounds = 0
    extended: list[str] = []
    for b, v in verdicts.items():
        table = []
        for rank, row in enumerate(v.rows, 1):
            for base in row.names:
                entry = t.get("schedules", {}).get(base, {}).get(str(b))
                if not isinstance(entry, dict) or not entry.get("chosen"):
                    continue
                setting = t.get("settings", {}).get(entry["chosen"], {})
                mark = marks(entry, setting, space)
                edges += "edge" in mark
                bounds += "at the bound" in mark
                lr_space = _numbers(entry.get("lr_space")) or _numbers(space.get("lr"))
                more = _numbers(entry.get("extended"))
                if more:
                    extended.append(f"{code(base)} at {b} epochs: lr {lrs_text(more)}")
                val = entry.get("val_mae", {}).get(entry["chosen"])
                own = per_seed(res, base, b)
                table.append([str(rank) + ("=" if len(row.names) > 1 else ""), code(base),
                              setting_text(setting, space)
                              + "".join(f" ({m})" for m in mark),
                              lrs_text(lr_space), f3(val if _number(val) else None),
                              pm(list(per_seed(view, base, b).values())),
                              pm(list(own.values())) if own else "–"])
        if table:
            parts.append(f"### {b} epochs\n\n" + md_table(
                ["rank", "schedule", "chosen", "lr space", "val MAE (tuning seeds)",
                 "test MAE, tuned", "test MAE, own settings"], table, "lllllrr"))
    if extended:
        parts.append("Points added beyond the profile's grid: " + "; ".join(extended) + ".")
    if edges:
        parts.append(f"{edges} chosen setting{'s' if edges > 1 else ''} marked *edge* "
                     f"{'are' if edges > 1 else 'is'} the smallest or largest lr of "
                     f"{'their' if edges > 1 else 'its'} space: the best lr may lie outside "
                     "it, so such a schedule may be under-tuned and its rank is a lower bound "
                     "on what tuning gives it"
                     + ("; *at the bound*: the space could not be extended past a stated "
                        "bound (`tune.lr_bounds`)" if bounds else "; widen `tune.lr` to know")
                     + ".")
    return "\n\n".join(parts)


def _extend_text(extend: dict) -> str:
    ratio = extend.get("ratio")
    bounds = _numbers(extend.get("bounds"))
    return ("; where a choice fell on the edge of the space, the space was extended"
            + (f" by a factor of {ratio:g}" if _number(ratio) else "")
            + (f" within the bounds [{bounds[0]:g}, {bounds[1]:g}]" if len(bounds) == 2
               else "")
            + " and the schedule tuned again there")

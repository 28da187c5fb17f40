"""The tuning protocol: the same search space and the same seeds for every schedule.

A schedule can win or lose because its one learning rate suits the model, not because of its
shape. With a profile's ``tune`` block (or ``bench run --tune``), as AlgoPerf and DeepOBS
compare training algorithms:

1. **tune**: every schedule is trained at every point of the search space (peak ``lr`` x
   ``weight_decay``) on the tuning seeds, for every budget;
2. **choose**: per schedule and budget, the point with the lowest mean final *validation*
   MAE over the tuning seeds (a diverged or failed tuning run makes its point ineligible);
3. **evaluate**: the chosen point is trained on the evaluation seeds (the profile's
   ``seeds``), and only those runs enter the test comparison. Every schedule at the note's
   own settings is trained on the evaluation seeds too, so that the report ranks schedules
   both ways.

A choice at the smallest or largest lr of the grid says only that the best lr may lie
beyond it. With ``tune.extend`` (on by default) such a choice is not the answer: for that
schedule and budget the grid is extended one step outward, by the grid's own geometric ratio
(rounded to two significant digits, clipped to ``tune.lr_bounds``), the new points are
trained on the tuning seeds, and the choice is made again, until it is interior or sits at a
bound (then it stays marked). A point whose tuning runs diverge is part of the space, so a
choice next to it is interior.

No test number is ever used to choose, and no tuning seed is ever used to judge. The points
are ordinary schedules (``plateau@lr0.003``) in the experiment folder, so skip-and-resume,
locks and prefix reuse apply to tuning runs as to any other; a point equal to a schedule's
own settings keeps the schedule's name and is trained once. ``tuning.json`` records the
space, the points added to it, both seed lists, every point's validation MAE and the choice.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from bench.build import DryRun
from bench.config import ConfigError
from bench.driver import check_before_run, run_grid
from bench.plan import Cell, grid_cells
from bench.prepare import experiment_lock
from bench.profile import Profile, TuneSettings
from bench.store import atomic_write_json
from bench.tables import collect
from schedules import NamedSchedule, ScheduleError

TUNING_FILE = "tuning.json"
VARIANT_MARK = "@"  # in a schedule name: a point of the search space


def points(tune: TuneSettings, item: NamedSchedule, lrs=None) -> list[dict[str, float]]:
    """The search space for one schedule: lr x weight decay (its own when none is given)."""
    decays = tune.weight_decay or (item.spec.weight_decay,)
    return [{"lr": lr, "weight_decay": wd} for lr in (lrs or tune.lr) for wd in decays]


def variant(item: NamedSchedule, point: dict[str, float], tune: TuneSettings) -> NamedSchedule:
    """``item`` at one point of the space; the schedule itself when the point is its own."""
    try:
        spec = dataclasses.replace(item.spec, **point)
    except ScheduleError as exc:
        raise ConfigError(f"tune: schedule '{item.name}' at {point}: {exc}") from None
    if spec == item.spec:
        return item
    name = f"{item.name}{VARIANT_MARK}lr{point['lr']:g}"
    if tune.weight_decay:
        name += f"_wd{point['weight_decay']:g}"
    return dataclasses.replace(item, name=name, spec=spec,
                               summary=f"{item.summary} (tuning point lr {point['lr']:g}, "
                                       f"weight decay {point['weight_decay']:g})")


def grid_ratio(lrs) -> float | None:
    """The geometric step of an lr grid, ``(max / min) ** (1 / (n - 1))``; None for one
    point (a grid of one lr has no direction to extend in)."""
    lrs = sorted(lrs)
    if len(lrs) < 2:
        return None
    return (lrs[-1] / lrs[0]) ** (1 / (len(lrs) - 1))


def next_lr(space, upward: bool, ratio: float, bounds) -> float | None:
    """The lr one step beyond the edge of ``space`` (two significant digits, clipped to the
    bounds), or None when that edge already sits at its bound."""
    low, high = bounds
    edge = max(space) if upward else min(space)
    if (upward and edge >= high) or (not upward and edge <= low):
        return None
    step = edge * ratio if upward else edge / ratio
    value = float(f"{step:.2g}")
    return min(value, high) if upward else max(value, low)


@dataclasses.dataclass
class Space:
    """The lr values trained for one schedule at one budget, and what was added."""

    lrs: list[float]
    extended: list[float] = dataclasses.field(default_factory=list)
    at_bound: bool = False


def choose(summary: list[dict], space: dict[str, dict[int, list[NamedSchedule]]], seeds
           ) -> dict[str, dict[int, dict]]:
    """Per schedule and budget: every point's mean final validation MAE over the tuning
    seeds (None when a tuning run did not finish) and the point with the lowest."""
    by_cell = {(r["schedule"], r["budget"], r["seed"]): r for r in summary}
    out: dict[str, dict[int, dict]] = {}
    for base, per_budget in space.items():
        out[base] = {}
        for b, variants in per_budget.items():
            scores = {}
            for v in variants:
                rows = [by_cell.get((v.name, b, s)) for s in seeds]
                ok = all(r is not None and r.get("status") == "finished" for r in rows)
                scores[v.name] = (sum(float(r["val_mae"]) for r in rows) / len(rows)
                                  if ok else None)
            eligible = [n for n in scores if scores[n] is not None and math.isfinite(scores[n])]
            chosen = min(eligible, key=lambda n: scores[n]) if eligible else None
            out[base][b] = {"chosen": chosen, "val_mae": scores}
    return out


def run_tuned(profile: Profile, schedules: list[NamedSchedule], exp_dir: Path, *,
              stream, checked: DryRun | None = None, **grid_options) -> int:
    """Tune (extending the lr grid at its edges), choose on validation, evaluate on held-out
    seeds; the exit code of the grid."""
    tune = profile.tune
    if tune is None:
        raise ValueError("run_tuned needs a profile with a tune block")
    exp_dir = Path(exp_dir)
    budgets = list(profile.budgets)
    spaces = {s.name: {b: Space(sorted(tune.lr)) for b in budgets} for s in schedules}
    items = {s.name: s for s in schedules}
    ratio = grid_ratio(tune.lr)
    extend = tune.extend and ratio is not None

    def variants_of(base: str, lrs) -> list[NamedSchedule]:
        return [variant(items[base], p, tune) for p in points(tune, items[base], lrs)]

    def space_variants() -> dict[str, dict[int, list[NamedSchedule]]]:
        return {base: {b: variants_of(base, sp.lrs) for b, sp in per.items()}
                for base, per in spaces.items()}

    checked = checked or check_before_run(profile, schedules)
    print(f"tuning: {len(tune.lr) * max(1, len(tune.weight_decay))} settings per schedule "
          f"({len(tune.lr)} lr" + (f" x {len(tune.weight_decay)} weight decay"
                                   if tune.weight_decay else "")
          + f") x budgets {budgets} on tuning seeds {list(tune.tuning_seeds)}"
          + (f"; a choice at an edge extends the lr grid by x{ratio:.3g} within "
             f"[{tune.lr_bounds[0]:g}, {tune.lr_bounds[1]:g}]" if extend else ""),
          file=stream)
    first = list({v.name: v for per in space_variants().values() for vs in per.values()
                  for v in vs}.values())
    code = run_grid(profile, first, exp_dir, stream=stream, checked=checked,
                    cells=grid_cells(first, budgets, tune.tuning_seeds), **grid_options)
    while True:
        if code == 130:
            return code
        with experiment_lock(exp_dir):
            _, summary, _ = collect(exp_dir)
        current = space_variants()
        lr_of = {v.name: v.spec.lr for per in current.values() for vs in per.values()
                 for v in vs}
        choice = choose(summary, current, tune.tuning_seeds)
        if not extend:
            break
        new: dict[str, NamedSchedule] = {}
        cells: list[Cell] = []
        for base, per in choice.items():
            for b, c in per.items():
                sp = spaces[base][b]
                if c["chosen"] is None:
                    continue
                lr = lr_of[c["chosen"]]
                upward = lr == max(sp.lrs)
                if not upward and lr != min(sp.lrs):
                    continue
                nxt = next_lr(sp.lrs, upward, ratio, tune.lr_bounds)
                if nxt is None:
                    sp.at_bound = True
                    continue
                sp.lrs = sorted([*sp.lrs, nxt])
                sp.extended.append(nxt)
                print(f"tuning: {base} at {b} epochs chose lr {lr:g}, the "
                      f"{'largest' if upward else 'smallest'} tried; adding lr {nxt:g}",
                      file=stream)
                for v in variants_of(base, [nxt]):
                    new[v.name] = v
                    cells += [(v.name, b, s) for s in tune.tuning_seeds]
        if not cells:
            break
        code = run_grid(profile, list(new.values()), exp_dir, stream=stream, checked=checked,
                        cells=cells, **grid_options) or code

    all_variants = {v.name: v for per in space_variants().values() for vs in per.values()
                    for v in vs}
    record = {"space": {"lr": list(tune.lr), "weight_decay": list(tune.weight_decay)},
              "extend": {"on": extend, "bounds": list(tune.lr_bounds), "ratio": ratio},
              "own_settings": tune.own_settings,
              "tuning_seeds": list(tune.tuning_seeds), "eval_seeds": list(profile.seeds),
              "schedules": {base: {str(b): _entry(c, spaces[base][b], lr_of)
                                   for b, c in per.items()}
                            for base, per in choice.items()},
              "settings": {v.name: {"lr": v.spec.lr, "weight_decay": v.spec.weight_decay}
                           for v in all_variants.values()}}
    with experiment_lock(exp_dir):
        atomic_write_json(exp_dir / TUNING_FILE, record)
    cells = grid_cells(schedules, profile.budgets, profile.seeds) if tune.own_settings else []
    for per in choice.values():
        for b, c in per.items():
            if c["chosen"] is not None:
                cells += [(c["chosen"], b, s) for s in profile.seeds]
    cells = list(dict.fromkeys(cells))
    unchosen = [f"{base} at {b} epochs" for base, per in choice.items()
                for b, c in per.items() if c["chosen"] is None]
    if unchosen:
        print(f"note: no tuning point finished on every tuning seed for {', '.join(unchosen)}; "
              + ("those schedules are evaluated at their own settings only"
                 if tune.own_settings else "those schedules are not evaluated"), file=stream)
    print("evaluating: the chosen settings" + (" and every schedule's own"
                                                 if tune.own_settings else "")
          + f" on seeds {list(profile.seeds)}", file=stream)
    everything = list({v.name: v for v in [*schedules, *all_variants.values()]}.values())
    evaluated = run_grid(profile, everything, exp_dir, stream=stream, checked=checked,
                         cells=cells, **grid_options)
    return evaluated if evaluated else code


def _entry(c: dict, sp: Space, lr_of: dict[str, float]) -> dict:
    """One schedule's choice at one budget, as ``tuning.json`` records it."""
    lr = lr_of.get(c["chosen"])
    edge = lr is not None and len(sp.lrs) > 1 and lr in (min(sp.lrs), max(sp.lrs))
    return {**c, "lr_space": sp.lrs, "extended": sorted(sp.extended),
            "edge": edge, "at_bound": bool(edge and sp.at_bound)}

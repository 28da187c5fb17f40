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

No test number is ever used to choose, and no tuning seed is ever used to judge. The points
are ordinary schedules (``plateau@lr0.003``) in the experiment folder, so skip-and-resume,
locks and prefix reuse apply to tuning runs as to any other; a point equal to a schedule's
own settings keeps the schedule's name and is trained once. ``tuning.json`` records the
space, both seed lists, every point's validation MAE and the choice.
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


def points(tune: TuneSettings, item: NamedSchedule) -> list[dict[str, float]]:
    """The search space for one schedule: lr x weight decay (its own when none is given)."""
    decays = tune.weight_decay or (item.spec.weight_decay,)
    return [{"lr": lr, "weight_decay": wd} for lr in tune.lr for wd in decays]


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


def choose(summary: list[dict], space: dict[str, list[NamedSchedule]], budgets, seeds
           ) -> dict[str, dict[int, dict]]:
    """Per schedule and budget: every point's mean final validation MAE over the tuning
    seeds (None when a tuning run did not finish) and the point with the lowest."""
    by_cell = {(r["schedule"], r["budget"], r["seed"]): r for r in summary}
    out: dict[str, dict[int, dict]] = {}
    for base, variants in space.items():
        out[base] = {}
        for b in budgets:
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
    """Tune, choose on validation, evaluate on held-out seeds; the exit code of the grid."""
    tune = profile.tune
    if tune is None:
        raise ValueError("run_tuned needs a profile with a tune block")
    exp_dir = Path(exp_dir)
    space = {s.name: [variant(s, p, tune) for p in points(tune, s)] for s in schedules}
    variants = list({v.name: v for vs in space.values() for v in vs}.values())
    everything = list({v.name: v for v in [*schedules, *variants]}.values())
    checked = checked or check_before_run(profile, schedules)
    print(f"tuning: {len(variants)} settings ({len(tune.lr)} lr"
          + (f" x {len(tune.weight_decay)} weight decay" if tune.weight_decay else "")
          + f" per schedule) x budgets {list(profile.budgets)} on tuning seeds "
          f"{list(tune.tuning_seeds)}", file=stream)
    code = run_grid(profile, variants, exp_dir, stream=stream, checked=checked,
                    cells=grid_cells(variants, profile.budgets, tune.tuning_seeds),
                    **grid_options)
    if code == 130:
        return code
    with experiment_lock(exp_dir):
        _, summary, _ = collect(exp_dir)
    choice = choose(summary, space, profile.budgets, tune.tuning_seeds)
    record = {"space": {"lr": list(tune.lr), "weight_decay": list(tune.weight_decay)},
              "tuning_seeds": list(tune.tuning_seeds), "eval_seeds": list(profile.seeds),
              "schedules": {base: {str(b): c for b, c in per.items()}
                            for base, per in choice.items()},
              "settings": {v.name: {"lr": v.spec.lr, "weight_decay": v.spec.weight_decay}
                           for v in variants}}
    with experiment_lock(exp_dir):
        atomic_write_json(exp_dir / TUNING_FILE, record)
    cells: list[Cell] = grid_cells(schedules, profile.budgets, profile.seeds)
    for per in choice.values():
        for b, c in per.items():
            if c["chosen"] is not None:
                cells += [(c["chosen"], b, s) for s in profile.seeds]
    cells = list(dict.fromkeys(cells))
    unchosen = [f"{base} at {b} epochs" for base, per in choice.items()
                for b, c in per.items() if c["chosen"] is None]
    if unchosen:
        print(f"note: no tuning point finished on every tuning seed for {', '.join(unchosen)}; "
              "those schedules are evaluated at their own settings only", file=stream)
    print(f"evaluating: the chosen settings and every schedule's own on seeds "
          f"{list(profile.seeds)}", file=stream)
    evaluated = run_grid(profile, everything, exp_dir, stream=stream, checked=checked,
                         cells=cells, **grid_options)
    return evaluated if evaluated else code

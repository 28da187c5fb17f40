"""A tuned experiment's report: every headline number is a tuned number, also when the
schedules' own settings were never trained on the evaluation seeds; choices at the edge of
the space or at a stated bound are marked, and extended points listed; an older tuning record
without those fields still renders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.store import atomic_write_json, atomic_write_text, rows_to_csv
from bench.tables import SUMMARY_COLUMNS

BUDGET = 6
SEEDS = [0, 1, 2, 3, 4, 5]
TUNING_SEED = 1000


def info(name: str) -> dict:
    return {"summary": f"{name} schedule", "groups": [], "hyperparameters": "lr 1e-3",
            "optimizer": "Adam", "spec": {"kind": "constant"}, "budget_dependent": False,
            "step_unit": "epoch", "needs_metric": False}


def write_tuned(exp: Path, levels: dict[str, float], chosen: dict[str, str],
                extra: dict | None = None, own: bool = True) -> None:
    """A tuned experiment folder as ``bench run --tune`` leaves it, without run folders:
    ``levels`` gives each run name's final test MAE level (per-seed noise 0.3 %), ``chosen``
    each schedule's chosen point; ``own`` whether the own-settings runs were trained."""
    rng = np.random.default_rng(0)
    names = [n for n in levels if own or n in chosen.values()]
    cells = [[n, BUDGET, s] for n in names for s in SEEDS]
    cells += [[point, BUDGET, TUNING_SEED] for point in chosen.values()]
    atomic_write_json(exp / "grid.json", {"cells": cells, "order": list(levels),
                                          "schedules": {n: info(n) for n in levels}})
    atomic_write_json(exp / "experiment.json", {"dataset": {"name": "synthetic-la"},
                                                "model": {"name": "stid"}})
    seed_effect = rng.normal(0, 0.05, len(SEEDS))
    summary, epochs = [], []
    for n in names:
        for k, s in enumerate(SEEDS):
            mae = float(levels[n] * np.exp(seed_effect[k] + rng.normal(0, 0.003)))
            summary.append({"schedule": n, "budget": BUDGET, "seed": s, "status": "finished",
                            "epochs_done": BUDGET, "val_mae": mae, "test_mae": mae,
                            "best_test_mae": mae, "best_epoch": BUDGET - 1, "run": f"{n}/{s}",
                            **seconds(60.0)})
            epochs += [{"schedule": n, "budget": BUDGET, "seed": s, "epoch": e, "lr": 1e-3,
                        "val_mae": mae * (1 + 0.1 * (BUDGET - 1 - e)), "test_mae": mae}
                       for e in range(BUDGET)]
    for point in chosen.values():  # the tuning runs the record's validation MAE comes from
        summary.append({"schedule": point, "budget": BUDGET, "seed": TUNING_SEED,
                        "status": "finished", "epochs_done": BUDGET, "val_mae": levels[point],
                        "test_mae": levels[point], "best_test_mae": levels[point],
                        "best_epoch": BUDGET - 1, "run": f"{point}/{TUNING_SEED}",
                        **seconds(120.0)})
    atomic_write_text(exp / "summary.csv", rows_to_csv(summary, SUMMARY_COLUMNS))
    atomic_write_text(exp / "epochs.csv", rows_to_csv(epochs))
    points = {n: {"lr": 3e-3 if "@" in n else 1e-3, "weight_decay": 0.0} for n in levels}
    record = {"eval_seeds": SEEDS, "tuning_seeds": [TUNING_SEED], "space": {"lr": [1e-3, 3e-3]},
              "settings": points,
              "schedules": {base: {str(BUDGET): {"chosen": point,
                                                 "val_mae": {point: levels[point]},
                                                 **(extra or {}).get(base, {})}}
                            for base, point in chosen.items()}}
    if extra and "top" in extra:
        record.update(extra["top"])
    atomic_write_json(exp / "tuning.json", record)


def seconds(total: float) -> dict:
    """The time columns of a run that trained all its epochs itself in ``total`` seconds."""
    return {"seconds": total, "seconds_per_epoch": total / BUDGET, "shared_epochs": 0,
            "trained_seconds": total}


def report(tmp_path: Path, name: str) -> str:
    assert main(["report", "--results", str(tmp_path / "results"), "--experiment", name,
                 "--out", str(tmp_path / "reports")]) == 0
    return (tmp_path / "reports" / name / "report.md").read_text()


@pytest.fixture
def levels() -> dict[str, float]:
    return {"plateau": 3.5, "plateau@lr0.003": 3.0, "wsd": 3.3, "wsd@lr0.003": 2.9,
            "onecycle": 2.8, "onecycle@lr0.003": 3.1}


CHOSEN = {"plateau": "plateau@lr0.003", "wsd": "wsd@lr0.003", "onecycle": "onecycle@lr0.003"}


def test_only_tuning_points_every_section_is_tuned(tmp_path, levels):
    """Own settings never trained on the evaluation seeds: the report is made from the
    tuned view alone, and no own-settings number appears."""
    write_tuned(tmp_path / "results/tuned", levels, CHOSEN, own=False)
    text = report(tmp_path, "tuned")
    answer = text.split("## Answer")[1].split("\n## ")[0]
    assert "**use `wsd`**" in answer  # 2.9 beats 3.0 and 3.1 at 0.3 % noise
    assert "Own settings (not tuned)" not in text
    table = text.split("## Each schedule tuned")[1].split("\n## ")[0]
    assert table.count("| – |") == 3  # no own-settings column value anywhere
    assert "@lr" not in text.split("## Schedules")[0]  # tuned under the schedules' names
    final = text.split("## Final test MAE, each schedule tuned")[1].split("\n## ")[0]
    assert "2.9" in final and "| `onecycle` |" in final
    rows = (tmp_path / "reports/tuned/per_seed.csv").read_text()
    assert ",own," not in rows and rows.count("tuned (lr 0.003, wd 0)") == 3 * len(SEEDS)


def test_own_settings_are_labelled_and_never_the_headline(tmp_path, levels):
    """At its own settings `onecycle` is best (2.8); tuned, `wsd` is: the answer is the
    tuned one and the own-settings table says what it is."""
    write_tuned(tmp_path / "results/tuned", levels, CHOSEN, own=True)
    text = report(tmp_path, "tuned")
    answer = text.split("## Answer")[1].split("\n## ")[0]
    assert "**use `wsd`**" in answer and "onecycle` **" not in answer
    own = text.split("## Own settings (not tuned)")[1].split("\n## ")[0]
    assert "every verdict above is on the tuned runs" in own and "2.8" in own


def test_extended_spaces_and_bounds_are_marked(tmp_path, levels):
    extra = {"plateau": {"lr_space": [1e-3, 3e-3, 1e-2], "extended": [1e-2], "edge": False,
                         "at_bound": False},
             "wsd": {"lr_space": [1e-3, 3e-3], "extended": [], "edge": True, "at_bound": True},
             "onecycle": {"edge": False},
             "top": {"extend": {"on": True, "bounds": [1e-4, 3e-3], "ratio": 3}}}
    write_tuned(tmp_path / "results/tuned", levels, CHOSEN, extra, own=False)
    section = report(tmp_path, "tuned").split("## Each schedule tuned")[1].split("\n## ")[0]
    assert "lr 0.003 (edge) (at the bound)" in section  # wsd
    assert "| `plateau` | lr 0.003 |" in section and "0.001, 0.003, 0.01" in section
    assert "Points added beyond the profile's grid: `plateau` at 6 epochs: lr 0.01." in section
    assert "extended by a factor of 3 within the bounds [0.0001, 0.003]" in section
    assert "1 chosen setting marked *edge*" in section and "*at the bound*" in section


def test_an_older_tuning_record_marks_edges_from_the_space(tmp_path, levels):
    write_tuned(tmp_path / "results/tuned", levels, CHOSEN, own=True)
    section = report(tmp_path, "tuned").split("## Each schedule tuned")[1].split("\n## ")[0]
    assert section.count("lr 0.003 (edge)") == 3 and "at the bound" not in section


def test_time_and_the_training_command_count_every_tuning_point(tmp_path, levels):
    """What the answer cost: the tuning runs and every point's evaluation runs, under the
    schedule they tune; the command to train it again names every tuned schedule."""
    # tuning.json lists the schedules in another order than the grid registered them.
    chosen = {name: CHOSEN[name] for name in ("onecycle", "wsd", "plateau")}
    write_tuned(tmp_path / "results/tuned", levels, chosen, own=True)
    exp = tmp_path / "results/tuned/experiment.json"
    exp.write_text(exp.read_text().replace(
        "{", '{"command": "python -m bench run --profile tuned-x", ', 1))
    text = report(tmp_path, "tuned")
    time = text.split("## Time")[1].split("\n## ")[0]
    # Per schedule: 1 tuning run (120 s) and 2 points x 6 evaluation seeds (60 s each);
    # s / epoch is the mean over those 13 runs: (20 + 12 x 10) / 13.
    for name in CHOSEN:
        assert f"| `{name}` | 10.77 | 1 + 12 | 0 | 2.0 min + 12.0 min |" in time, time
    assert "@lr" not in time
    assert "Training time summed over runs: 42.0 min (6.0 min tuning" in time
    assert "36.0 min evaluating; finished runs only)" in time
    assert time.index("`plateau`") < time.index("`wsd`") < time.index("`onecycle`")
    command = text.split("**Train again**")[1]
    assert "--schedules plateau,wsd,onecycle " in command  # the grid's order
    assert "--seeds 0,1,2,3,4,5`" in command  # the evaluation seeds

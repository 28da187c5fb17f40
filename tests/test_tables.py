"""From run folders to ``epochs.csv`` and ``summary.csv``: cells, statuses, prefixes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bench.store import RunDir, atomic_write_json, json_bytes
from bench.tables import collect, job_for, update_grid, write_tables

SCHEDULES = {"flat": {"budget_dependent": False}, "cos": {"budget_dependent": True}}


def records(n: int, start_mae: float = 5.0) -> list[dict]:
    rows = []
    for e in range(n):
        mae = start_mae - 0.1 * e
        row = {"epoch": e, "lr": 1e-3, "lr_end": 1e-3, "train_loss": mae, "val_mae": mae + 0.5}
        for m in ("mae", "rmse", "mape"):
            for h in ("", "_h3", "_h6", "_h12"):
                row[f"test_{m}{h}"] = mae
        row.update(seconds=1.0, train_seconds=0.8, eval_seconds=0.2)
        rows.append(row)
    return rows


def write_run(exp: Path, key: str, rows: list[dict], status: str, **extra) -> None:
    """A run folder as a run writes it: a config naming the run its path names, records and
    the status vouching for both."""
    run = RunDir(exp / "runs" / key)
    schedule, name = key.split("/")
    epochs = int(name[1:name.index("-")]) if name.startswith("e") else None
    config = {"config": {"schedule": {"name": schedule}, "seed": int(name.rsplit("seed")[1]),
                         "epochs": epochs}, "config_hash": "h"}
    run.write_files({"config.json": json_bytes(config), "records.csv": RunDir.records_bytes(rows)},
                    status=status, config_hash="h", epochs_done=len(rows), **extra)


@pytest.fixture
def exp(tmp_path) -> Path:
    exp = tmp_path / "exp"
    cells = [(s, b, 0) for s in SCHEDULES for b in (3, 5)] + [("flat", 3, 1)]
    update_grid(exp, SCHEDULES, cells)
    write_run(exp, "flat/seed0", records(5), "finished")
    write_run(exp, "flat/seed1", records(2), "diverged", diverged_epoch=2)
    write_run(exp, "cos/e3-seed0", records(3, 4.0), "finished")
    write_run(exp, "cos/e5-seed0", records(4, 4.0), "running")
    return exp


def test_job_for_follows_the_folding_rule(exp):
    grid = {"schedules": SCHEDULES, "cells": [["flat", 3, 0], ["flat", 5, 0], ["cos", 3, 0]]}
    assert job_for(("flat", 3, 0), grid).key == "flat/seed0"
    assert job_for(("cos", 3, 0), grid).key == "cos/e3-seed0"


def test_summary_statuses_and_prefix_budgets(exp):
    epochs, summary, problems = collect(exp)
    assert problems == []
    by = {(r["schedule"], r["budget"], r["seed"]): r for r in summary}
    assert by[("flat", 3, 0)]["status"] == "finished" and by[("flat", 3, 0)]["epochs_done"] == 3
    assert by[("flat", 3, 0)]["test_mae"] == pytest.approx(4.8)  # epoch 2 of the long run
    assert by[("flat", 3, 0)]["best_epoch"] == 2
    assert by[("flat", 5, 0)]["test_mae"] == pytest.approx(4.6)
    assert by[("flat", 3, 1)]["status"] == "diverged" and by[("flat", 3, 1)]["diverged_epoch"] == 2
    assert by[("cos", 5, 0)]["status"] == "incomplete" and "test_mae" not in by[("cos", 5, 0)]
    assert len([r for r in epochs if r["schedule"] == "flat" and r["seed"] == 0]) == 3 + 5


def test_damaged_records_are_reported_not_tabulated(exp):
    (exp / "runs/cos/e3-seed0/records.csv").write_text("epoch,lr\n0,0.001\n5,0.001\n")
    _, summary, problems = collect(exp)
    assert len(problems) == 1 and "records.csv" in problems[0]
    row = next(r for r in summary if r["schedule"] == "cos" and r["budget"] == 3)
    assert row["status"] == "missing"


def test_write_tables_writes_both_files(exp):
    atomic_write_json(exp / "experiment.json", {})
    write_tables(exp)
    with open(exp / "summary.csv") as fh:
        summary = list(csv.DictReader(fh))
    assert len(summary) == 5 and summary[0]["schedule"] == "cos"
    header = (exp / "epochs.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["schedule", "budget", "seed", "epoch"]

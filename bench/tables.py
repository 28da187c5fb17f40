"""From run folders to the experiment's ``epochs.csv`` and ``summary.csv``.

The grid an experiment has ever been asked for is kept in ``grid.json`` (the union of every
``bench run`` into the folder), so tables always cover every requested cell, whatever subset
the latest command ran. A cell whose run is unfinished appears in ``summary.csv`` with its
status and no metrics.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.config import ConfigError
from bench.plan import Job, fold
from bench.store import (
    EPOCH_KEYS,
    RunDir,
    atomic_write_json,
    atomic_write_text,
    read_json,
    rows_to_csv,
)

METRIC_COLUMNS = [f"{m}{h}" for m in ("mae", "rmse", "mape") for h in ("", "_h3", "_h6", "_h12")]
SUMMARY_COLUMNS = (
    ["schedule", "budget", "seed", "status", "epochs_done", "diverged_epoch", "final_lr",
     "val_mae"]
    + [f"test_{c}" for c in METRIC_COLUMNS]
    + ["best_epoch", "best_val_mae"]
    + [f"best_test_{c}" for c in METRIC_COLUMNS]
    + ["seconds", "seconds_per_epoch", "run"]
)


def read_grid(exp_dir: Path) -> dict[str, Any]:
    path = exp_dir / "grid.json"
    if not path.exists():
        return {"cells": [], "schedules": {}, "order": []}
    try:
        grid = read_json(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}); restore it or move the experiment "
                          f"folder aside") from None
    if not isinstance(grid, dict) or not isinstance(grid.get("cells"), list):
        raise ConfigError(f"{path}: not a grid file (no 'cells' list)")
    grid.setdefault("schedules", {})
    grid.setdefault("order", [])
    return grid


def update_grid(exp_dir: Path, schedules: dict[str, dict], cells: list[tuple[str, int, int]]
                ) -> dict[str, Any]:
    """Add schedules and (schedule, budget, seed) cells to ``grid.json``; return the union."""
    grid = read_grid(exp_dir)
    grid["schedules"].update(schedules)
    grid["order"] += [s for s in schedules if s not in grid["order"]]
    known = {tuple(c) for c in grid["cells"]}
    grid["cells"] += [list(c) for c in cells if tuple(c) not in known]
    atomic_write_json(exp_dir / "grid.json", grid)
    return grid


def job_for(cell: tuple[str, int, int], grid: dict[str, Any]) -> Job:
    """The training job that holds a cell's records (``plan.fold`` over the grid's cells)."""
    schedule, budget, seed = cell
    budgets = {c[1] for c in grid["cells"] if c[0] == schedule and c[2] == seed}
    jobs = fold(schedule, grid["schedules"][schedule]["budget_dependent"], seed, budgets)
    return next(job for job in jobs if budget in job.budgets)


def _cell_summary(cell, rows: list[dict], status: dict | None) -> dict[str, Any]:
    schedule, budget, seed = cell
    out: dict[str, Any] = {"schedule": schedule, "budget": budget, "seed": seed}
    state = (status or {}).get("status", "missing")
    done = len(rows)
    if done >= budget:
        out["status"] = "finished"
    elif state == "diverged":
        out["status"] = "diverged"
        out["diverged_epoch"] = status.get("diverged_epoch")
    elif state in ("failed", "missing"):
        out["status"] = state
    else:
        out["status"] = "incomplete"
    rows = rows[:budget]
    out["epochs_done"] = len(rows)
    if out["status"] != "finished":
        return out
    final = rows[-1]
    best = min(rows, key=lambda r: (r["val_mae"], r["epoch"]))
    out["final_lr"] = final["lr"]
    out["val_mae"] = final["val_mae"]
    for col in METRIC_COLUMNS:
        out[f"test_{col}"] = final[f"test_{col}"]
    out["best_epoch"] = int(best["epoch"])
    out["best_val_mae"] = best["val_mae"]
    for col in METRIC_COLUMNS:
        out[f"best_test_{col}"] = best[f"test_{col}"]
    out["seconds"] = math.fsum(r["seconds"] for r in rows)
    out["seconds_per_epoch"] = out["seconds"] / len(rows)
    return out


_RECORDS: dict[Path, tuple[tuple[int, int], list[dict]]] = {}


def _cached_records(run: RunDir) -> list[dict]:
    """A run's records, parsed again only when its file changed: the tables are rebuilt
    after every finished job, and most runs have not changed since the last time."""
    stat = run.records.stat()
    key = (stat.st_mtime_ns, stat.st_size)
    hit = _RECORDS.get(run.records)
    if hit is None or hit[0] != key:
        hit = (key, run.read_records())
        _RECORDS[run.records] = hit
    return hit[1]


def collect(exp_dir: Path) -> tuple[list[dict], list[dict], list[str]]:
    """Epoch rows, summary rows and problems (damaged files) for every cell of the grid."""
    grid = read_grid(exp_dir)
    epoch_rows: list[dict] = []
    summary_rows: list[dict] = []
    problems: list[str] = []
    cache: dict[str, tuple[list[dict], dict | None]] = {}
    for cell in sorted(tuple(c) for c in grid["cells"]):
        job = job_for(cell, grid)
        if job.key not in cache:
            run = RunDir(exp_dir / "runs" / job.key)
            rows, status = [], None
            try:
                status = run.read_status()
                if run.records.exists():
                    rows = _cached_records(run)
            except ValueError as exc:
                problems.append(str(exc))
                rows, status = [], None
            cache[job.key] = (rows, status)
        rows, status = cache[job.key]
        schedule, budget, seed = cell
        for r in rows[:budget]:
            epoch_rows.append({"schedule": schedule, "budget": budget, "seed": seed, **r})
        summary_rows.append({**_cell_summary(cell, rows, status), "run": job.key})
    return epoch_rows, summary_rows, problems


def write_tables(exp_dir: Path) -> list[str]:
    """Rewrite ``epochs.csv`` and ``summary.csv`` atomically; return problems found."""
    epoch_rows, summary_rows, problems = collect(exp_dir)
    lead = list(EPOCH_KEYS)
    cols = dict.fromkeys(lead)
    for row in epoch_rows:  # a union, in first-seen order
        cols.update(dict.fromkeys(row))
    atomic_write_text(exp_dir / "epochs.csv",
                      rows_to_csv(epoch_rows, list(cols) if epoch_rows else lead + ["lr"]))
    atomic_write_text(exp_dir / "summary.csv", rows_to_csv(summary_rows, SUMMARY_COLUMNS))
    return problems

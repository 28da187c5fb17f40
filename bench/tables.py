"""From run folders to the experiment's ``epochs.csv`` and ``summary.csv``.

The grid an experiment has ever been asked for is kept in ``grid.json`` (the union of every
``bench run`` into the folder), so tables always cover every requested cell, whatever subset
the latest command ran. A cell whose run is unfinished appears in ``summary.csv`` with its
status and no metrics.

Both tables are derived: they hold nothing the run folders do not, so ``bench report`` and
``bench check`` rebuild them (``rebuild_tables``) and say so when what was on disk differed. A
run's records enter them only when they match the checksum its ``status.json`` records and
parse with their types; a damaged run is a problem, named once, and its cells read as missing.
So is a run whose folder is not the run its path names (``RunDir.binding_problem``: copied
from another run) or that was trained with other settings than ``experiment.json`` records.

Every file is read through ``bench.safe_files`` (no link followed, regular files only, size
caps), and every name in ``grid.json`` passes the schedule registry's rule, so no name leads a
read or a write out of the experiment folder.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from bench.config import ConfigError
from bench.plan import Job, fold
from bench.safe_files import (
    check_name,
    clear_for_write,
    parse_json,
    read_bytes,
    read_json,
    reason_of,
)
from bench.store import (
    EPOCH_KEYS,
    LockRefused,
    RunDir,
    StoreError,
    atomic_write_json,
    atomic_write_text,
    parse_records,
    parse_status,
    rows_to_csv,
    sha256_bytes,
    short_repr,
)

METRIC_COLUMNS = [f"{m}{h}" for m in ("mae", "rmse", "mape") for h in ("", "_h3", "_h6", "_h12")]
SUMMARY_COLUMNS = (
    ["schedule", "budget", "seed", "status", "epochs_done", "diverged_epoch", "final_lr",
     "val_mae"]
    + [f"test_{c}" for c in METRIC_COLUMNS]
    + ["best_epoch", "best_val_mae"]
    + [f"best_test_{c}" for c in METRIC_COLUMNS]
    + ["seconds", "seconds_per_epoch", "run", "shared_epochs", "trained_seconds"]
)


def read_grid(exp_dir: Path) -> dict[str, Any]:
    """``grid.json`` checked: every schedule name a plain name (the registry's rule), every
    cell ``[schedule, budget, seed]`` of a schedule the file describes; else ``ConfigError``."""
    path = exp_dir / "grid.json"
    try:
        grid = read_json(path, "grid", exp_dir)
    except FileNotFoundError:
        return {"cells": [], "schedules": {}, "order": []}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({reason_of(exc)}); restore it "
                          "or move the experiment folder aside") from None
    if not isinstance(grid, dict) or not isinstance(grid.get("cells"), list):
        raise ConfigError(f"{path}: not a grid file (no 'cells' list)")
    grid.setdefault("schedules", {})
    grid.setdefault("order", [])
    schedules, order = grid["schedules"], grid["order"]
    if not (isinstance(schedules, dict) and isinstance(order, list)
            and all(isinstance(v, dict) and isinstance(v.get("budget_dependent"), bool)
                    for v in schedules.values())):
        raise ConfigError(f"{path}: malformed 'schedules' or 'order'")
    try:
        for name in [*schedules, *order]:
            check_name(name, str(path))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for cell in grid["cells"]:
        if not (isinstance(cell, list) and len(cell) == 3 and isinstance(cell[0], str)
                and cell[0] in schedules
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                        for x in cell[1:])):
            raise ConfigError(f"{path}: cell {short_repr(cell)} is not [schedule, budget, "
                              "seed] of a schedule the file describes")
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


def job_for(cell: tuple[str, int, int], grid: dict[str, Any],
            budgets: dict[tuple[str, int], set[int]] | None = None) -> Job:
    """The training job that holds a cell's records (``plan.fold`` over the grid's cells);
    ``budgets`` (``budgets_by_run``) spares a scan of every cell per cell."""
    schedule, budget, seed = cell
    if budgets is None:
        budgets = budgets_by_run(grid)
    jobs = fold(schedule, grid["schedules"][schedule]["budget_dependent"], seed,
                budgets[(schedule, seed)])
    return next(job for job in jobs if budget in job.budgets)


def budgets_by_run(grid: dict[str, Any]) -> dict[tuple[str, int], set[int]]:
    """Per (schedule, seed), the budgets the grid asks for: one pass over the cells."""
    out: dict[tuple[str, int], set[int]] = {}
    for schedule, budget, seed in grid["cells"]:
        out.setdefault((schedule, seed), set()).add(budget)
    return out


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
    # A run forked from a trunk (bench.trunks) holds the trunk's first epochs, times and all;
    # only the rest was trained for it.
    shared = min(_fork_epoch(status), len(rows))
    out["shared_epochs"] = shared
    out["trained_seconds"] = math.fsum(r["seconds"] for r in rows[shared:])
    return out


def _fork_epoch(status: dict | None) -> int:
    value = (status or {}).get("fork_epoch", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


_RECORDS: dict[Path, tuple[str, list[dict]]] = {}  # records.csv -> (sha256, parsed rows)


def read_run(run: RunDir) -> tuple[list[dict], dict | None]:
    """A run's verified records and status; ``ValueError`` names what is damaged.

    The status is read before and after the records, and the pair read again if it changed
    meanwhile, so a run being trained (its files rewritten each epoch) is never mistaken for a
    damaged one. Records are parsed again only when their content changed: the tables are
    rebuilt after every finished job, and most runs have not changed since the last time."""
    for _ in range(20):
        before = run.read_optional("status.json")
        records = run.read_optional("records.csv")
        if run.read_optional("status.json") == before:
            break
    status = None if before is None else parse_status(before, run.status)
    if records is None:
        if status is not None and status.get("schema", 1) >= 2 and run.vouched_by(
                status, "records.csv"):
            raise ValueError(f"{run.records}: missing (status.json records its checksum)")
        return [], status
    if status is None:
        raise ValueError(f"{run.status}: missing, so records.csv cannot be verified")
    if status.get("schema", 1) < 2:
        raise ValueError(f"{run.status}: written before run files carried checksums, so "
                         "records.csv cannot be verified")
    digest = sha256_bytes(records)
    if digest not in run.vouched_by(status, "records.csv"):
        raise ValueError(f"{run.records}: checksum differs from status.json (edited or "
                         "damaged)")
    hit = _RECORDS.get(run.records)
    if hit is None or hit[0] != digest:
        hit = (digest, parse_records(records, run.records))
        _RECORDS[run.records] = hit
    rows = hit[1]
    if status["status"] in ("finished", "diverged") and len(rows) != status["epochs_done"]:
        raise ValueError(f"{run.records}: {len(rows)} rows, status says "
                         f"{status['epochs_done']}")
    return rows, status


IDENTITY_KEYS = ("dataset", "model", "train")


def _identity(exp_dir: Path) -> dict | None:
    """What every run of the experiment must have been trained with (``experiment.json``),
    or None when the folder records no identity to check against."""
    try:
        record = read_json(exp_dir / "experiment.json", "experiment", exp_dir)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not all(isinstance(record.get(k), dict)
                                               for k in IDENTITY_KEYS):
        return None
    return {k: record[k] for k in IDENTITY_KEYS}


def stale(run: RunDir, status: dict | None, identity: dict | None) -> str | None:
    """Why a run's records do not belong here, or None: its folder is not the run its path
    names (``RunDir.binding_problem``), or it was trained on other data, model code or
    settings than the experiment records now. Its ``config.json`` must be the one its status
    vouches for."""
    if status is None:
        return None
    foreign = run.binding_problem(status)
    if foreign is not None:
        return f"{foreign}; left out"
    if identity is None:
        return None
    data = run.read_optional("config.json")
    if data is None or sha256_bytes(data) not in run.vouched_by(status, "config.json"):
        return f"{run.config}: missing or not the one status.json vouches for"
    try:
        config = parse_json(data, run.config).get("config")
    except (ValueError, AttributeError):
        config = None
    if not isinstance(config, dict):
        return f"{run.config}: not a run config"
    trained = {k: config.get(k) for k in IDENTITY_KEYS}
    if trained == identity:
        return None
    from bench.identity import describe_changes

    return (f"{run.root}: stale (changed since it was trained: "
            f"{describe_changes(trained, identity)}); left out until bench run redoes it")


def collect(exp_dir: Path) -> tuple[list[dict], list[dict], list[str]]:
    """Epoch rows, summary rows and problems (damaged or stale runs) for every cell of the
    grid; a damaged or stale run's cells read as missing."""
    grid = read_grid(exp_dir)
    identity = _identity(exp_dir)
    epoch_rows: list[dict] = []
    summary_rows: list[dict] = []
    problems: list[str] = []
    cache: dict[str, tuple[list[dict], dict | None]] = {}
    budgets = budgets_by_run(grid)
    for cell in sorted(tuple(c) for c in grid["cells"]):
        job = job_for(cell, grid, budgets)
        if job.key not in cache:
            run = RunDir(exp_dir / "runs" / job.key, base=exp_dir)
            try:
                rows, status = read_run(run)
                why = stale(run, status, identity)
                if why:
                    raise ValueError(why)
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


def render_tables(exp_dir: Path) -> tuple[str, str, list[str]]:
    """The text of ``epochs.csv`` and ``summary.csv`` built from the run folders, and the
    problems (damaged runs) found on the way."""
    epoch_rows, summary_rows, problems = collect(exp_dir)
    lead = list(EPOCH_KEYS)
    cols = dict.fromkeys(lead)
    for row in epoch_rows:  # a union, in first-seen order
        cols.update(dict.fromkeys(row))
    epochs = rows_to_csv(epoch_rows, list(cols) if epoch_rows else lead + ["lr"])
    return epochs, rows_to_csv(summary_rows, SUMMARY_COLUMNS), problems


def write_tables(exp_dir: Path) -> list[str]:
    """Rewrite ``epochs.csv`` and ``summary.csv`` atomically; return problems found."""
    epochs, summary, problems = render_tables(exp_dir)
    for name in ("epochs.csv", "summary.csv"):
        clear_for_write(exp_dir / name)  # derived: a folder or FIFO there is replaced
    atomic_write_text(exp_dir / "epochs.csv", epochs)
    atomic_write_text(exp_dir / "summary.csv", summary)
    return problems


def _as_they_are(exp_dir: Path, why: str) -> tuple[str, str, list[str]]:
    texts = []
    for name in ("epochs.csv", "summary.csv"):
        try:
            texts.append(read_bytes(exp_dir / name, "table", exp_dir).decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{exp_dir / name}: not found; run 'python -m bench run' "
                              "first") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{exp_dir / name}: unreadable ({exc})") from None
    return texts[0], texts[1], [f"{exp_dir}: {why}, so epochs.csv and summary.csv cannot be "
                                "checked against run folders; read as they are"]


def rebuild_tables(exp_dir: Path) -> tuple[str, str, list[str]]:
    """``epochs.csv`` and ``summary.csv`` rebuilt from the run folders for a reader (``bench
    report``, ``bench check``): rewritten under the experiment lock where they differ from
    what is on disk. Returns both texts and notes: damaged runs, and each table that did not
    match (or could not be rewritten, in a read-only folder, when the rebuilt text is used).

    Tables handed on without what they were derived from (no ``grid.json``, or no ``runs/``
    folder while they hold more than the grid alone says) cannot be verified: they are
    returned as they are, with a note, and never overwritten."""
    from bench.prepare import experiment_lock  # prepare imports this module

    if not os.path.lexists(exp_dir / "grid.json"):
        return _as_they_are(exp_dir, "no grid.json")
    unlocked = "the folder is not writable"
    try:
        lock = experiment_lock(exp_dir)
        lock.acquire()
    except LockRefused as exc:  # never written through: verify, keep the tables in memory
        lock, unlocked = None, f"{exc}, so nothing is written"
    except StoreError:
        lock = None  # a read-only folder: verify, and use the rebuilt tables without writing
    try:
        *texts, problems = render_tables(exp_dir)
        notes = list(problems)
        if lock is None and unlocked != "the folder is not writable":
            notes.append(f"{unlocked.removesuffix(', so nothing is written')}: the tables are "
                         "checked without it and nothing is written")
        changed = []
        for name, text in zip(("epochs.csv", "summary.csv"), texts):
            path = exp_dir / name
            try:
                on_disk = read_bytes(path, "table", exp_dir)
            except FileNotFoundError:
                on_disk, why = None, "was missing"
            except OSError:
                on_disk, why = None, "was unreadable"
            else:
                why = "did not match the run folders (truncated, edited or out of date)"
            if on_disk != text.encode():
                changed.append((path, text, why))
        if changed and not (exp_dir / "runs").is_dir() and all(
                path.exists() for path, _, _ in changed):
            return _as_they_are(exp_dir, "no run folders (runs/)")
        for path, text, why in changed:
            try:
                if lock is None:
                    raise StoreError("no lock")
                atomic_write_text(path, text)
                notes.append(f"{path.name} {why}; rebuilt")
            except StoreError:
                notes.append(f"{path.name} {why}; rebuilt in memory ({unlocked})")
        return texts[0], texts[1], notes
    finally:
        if lock is not None:
            lock.release()

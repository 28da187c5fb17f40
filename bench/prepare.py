"""An experiment folder made ready before any job runs: its identity, its grid, its
baselines.

``experiment.json`` holds the experiment's identity (``bench.identity``) and the facts about
its data: a folder that holds another dataset, model or training setting is refused; a new
version of the model's code or of the data is recorded and makes every run stale (each is
redone, with a note). ``baselines.csv`` names the data it was computed on and is computed
again for other data. ``grid.json`` is
the union of every cell ever asked for; ``baselines.csv`` the historical average and
persistence, which need no training.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from bench.config import ConfigError
from bench.data import data_facts, load_data
from bench.identity import describe_changes, experiment_identity, split_changes
from bench.profile import Profile
from bench.store import (
    FileLock,
    atomic_write_json,
    atomic_write_text,
    read_json,
    remove_stale_temporaries,
    rows_to_csv,
)
from bench.tables import update_grid
from schedules import NamedSchedule
from stforecast.baselines import BASELINES, evaluate_baseline


def experiment_lock(exp_dir: Path) -> FileLock:
    """Serialises read-modify-write of the files all drivers of an experiment share (each run
    folder has a single writer, its run lock's holder)."""
    return FileLock(exp_dir / ".lock", blocking=True)


def record_experiment(exp_dir: Path, profile: Profile, parameters: int,
                      command: str | None = None) -> list[str]:
    """Write or check ``experiment.json``; return notes on what changed version.
    ``command`` (the ``bench run`` that trains the experiment, for the report) is kept when
    given."""
    current = experiment_identity(profile)
    path = exp_dir / "experiment.json"
    notes = []
    facts = data_facts(load_data(profile, torch.device("cpu")))
    record = {**current, "parameters": parameters, "data": facts}
    if command:
        record["command"] = command
    if path.exists():
        try:
            old = read_json(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable ({exc}); move it aside to start "
                              "afresh") from None
        old_identity = {k: old.get(k) for k in current} if isinstance(old, dict) else {}
        if not command and isinstance(old, dict) and isinstance(old.get("command"), str):
            record["command"] = old["command"]
        settings, versions = split_changes(old_identity, current)
        if settings:
            raise ConfigError(
                f"{exp_dir} holds runs with other settings ({', '.join(settings)}; "
                f"{path.name}); use --experiment NAME for a new experiment folder")
        if not versions and {k: old.get(k) for k in record} == record:
            return notes
        if versions:
            notes.append(f"{describe_changes(old_identity, current, versions)} since this "
                         "folder's runs were trained: they are stale and will be redone")
    atomic_write_json(path, record)
    return notes


def schedule_info(item: NamedSchedule) -> dict:
    spec = item.spec
    return {"summary": item.summary, "groups": list(item.groups), "spec": spec.to_dict(),
            "hyperparameters": spec.hyperparameters(), "optimizer": spec.optimizer_text(),
            "budget_dependent": spec.budget_dependent,
            "step_unit": spec.step_unit, "needs_metric": spec.needs_metric}


def write_baselines(exp_dir: Path, profile: Profile) -> bool:
    """Historical average and persistence on val and test, once per experiment and data:
    each row carries the sha256 of the data it was computed on, and rows of other data (or
    none) are computed again. Returns whether they were (re)computed."""
    path = exp_dir / "baselines.csv"
    data = load_data(profile, torch.device("cpu"))
    digest = data.dataset.fingerprint
    if _baselines_of(path) == digest:
        return False
    rows = []
    for name in BASELINES:
        for split in ("val", "test"):
            rows.append({"baseline": name, "split": split, **evaluate_baseline(name, data, split),
                         "data_sha256": digest})
    atomic_write_text(path, rows_to_csv(rows))
    return True


def _baselines_of(path: Path) -> str | None:
    """The data sha256 every row of a baselines file names, or None (absent, unreadable,
    written without it or mixed)."""
    try:
        with open(path, newline="") as fh:
            sums = {row.get("data_sha256") for row in csv.DictReader(fh)}
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return sums.pop() if len(sums) == 1 else None


def prepare(exp_dir: Path, profile: Profile, schedules: list[NamedSchedule],
            parameters: int, cells: list[tuple[str, int, int]],
            command: str | None = None) -> list[str]:
    """Identity, grid (``cells`` join ``grid.json``) and baselines of an experiment folder
    (created here); notes back."""
    from bench.store import StoreError

    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create results folder {exp_dir}: {exc.strerror or exc}") from exc
    with experiment_lock(exp_dir):
        remove_stale_temporaries(exp_dir)  # every writer of these files holds this lock
        existed = (exp_dir / "baselines.csv").exists()
        notes = record_experiment(exp_dir, profile, parameters, command)
        update_grid(exp_dir, {s.name: schedule_info(s) for s in schedules}, cells)
        if write_baselines(exp_dir, profile) and existed:
            notes.append("baselines.csv recomputed: it was made from other data")
    return notes

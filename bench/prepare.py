"""An experiment folder made ready before any job runs: its identity, its grid, its
baselines.

``experiment.json`` holds the experiment's identity (``bench.identity``) and the facts about
its data: a folder that holds another dataset, model or training setting is refused; a new
version of the model's code or of the data is recorded and makes every run stale (each is
redone, with a note). ``baselines.csv`` names the data it was computed on and is computed
again for other data. ``grid.json`` is
the union of every cell ever asked for; ``baselines.csv`` the historical average and
persistence, which need no training. ``experiment.json`` also records the sha256 of
``baselines.csv`` (``baselines_sha256``): an edited or damaged file is computed again here,
and left out of a report (with a note) until then.

The experiment folder is a real folder inside ``--results`` (a link is refused), its lock a
regular file (anything else is replaced, with a note), and every file is read through
``bench.safe_files``.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import torch

from bench.config import ConfigError
from bench.data import data_facts, load_data
from bench.identity import describe_changes, experiment_identity, split_changes
from bench.profile import Profile
from bench.safe_files import clear_for_write, read_bytes, read_json, reason_of
from bench.store import (
    FileLock,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temporaries,
    rows_to_csv,
    sha256_bytes,
)
from bench.tables import update_grid
from schedules import NamedSchedule
from stforecast.baselines import BASELINES, evaluate_baseline


def experiment_lock(exp_dir: Path, replace: bool = False) -> FileLock:
    """Serialises read-modify-write of the files all drivers of an experiment share (each run
    folder has a single writer, its run lock's holder). A lock that is not a regular file is
    refused (``LockRefused``), or with ``replace`` replaced by a fresh one, with a note."""
    return FileLock(exp_dir / ".lock", blocking=True, replace=replace)


def check_experiment_folder(exp_dir: Path) -> None:
    """``ConfigError`` unless ``exp_dir`` is a real folder (or absent): a link there would
    lead every read and write of the experiment out of ``--results``."""
    try:
        is_link = Path(exp_dir).is_symlink()
        exists = os.path.lexists(exp_dir)
    except OSError as exc:
        raise ConfigError(f"{exp_dir}: unusable as an experiment folder "
                          f"({exc.strerror or exc})") from None
    if is_link:
        raise ConfigError(f"{exp_dir}: a symbolic link, not followed; give the folder it "
                          "points to as --results, or move the link aside")
    if exists and not Path(exp_dir).is_dir():
        raise ConfigError(f"{exp_dir}: not a folder; move it aside or choose another "
                          "--experiment")


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
    if os.path.lexists(path):
        try:
            old = read_json(path, "experiment", exp_dir)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable ({reason_of(exc)}); move it "
                              "aside to start afresh") from None
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


def write_baselines(exp_dir: Path, profile: Profile) -> str | None:
    """Historical average and persistence on val and test, once per experiment and data:
    each row carries the sha256 of the data it was computed on, and rows of other data (or
    none), or a file that does not match the checksum ``experiment.json`` records for it, are
    computed again. Returns why they were (re)computed, or None."""
    path = exp_dir / "baselines.csv"
    data = load_data(profile, torch.device("cpu"))
    digest = data.dataset.fingerprint
    raw = _read_optional(path, exp_dir)
    recorded = _recorded_baselines_sum(exp_dir)
    if raw is None:
        why = ("it was not a regular file within its size limit" if os.path.lexists(path)
               else "it was missing")
    elif _baselines_of(raw) != digest:
        why = "it was made from other data"
    elif recorded is not None and sha256_bytes(raw) != recorded:
        why = "it did not match the checksum experiment.json records (edited or damaged)"
    else:
        return None
    rows = []
    for name in BASELINES:
        for split in ("val", "test"):
            rows.append({"baseline": name, "split": split, **evaluate_baseline(name, data, split),
                         "data_sha256": digest})
    clear_for_write(path)  # a folder or FIFO in its place: computed again, so replaced
    atomic_write_text(path, rows_to_csv(rows))
    return why


def _read_optional(path: Path, exp_dir: Path) -> bytes | None:
    """A file of the experiment folder, or None when absent or refused (a link, a FIFO, a
    folder, too large): the caller then writes it afresh (replacing the entry itself)."""
    try:
        return read_bytes(path, "baselines", exp_dir)
    except OSError:
        return None


def _baselines_of(raw: bytes) -> str | None:
    """The data sha256 every row of a baselines file names, or None (unreadable, written
    without it or mixed)."""
    try:
        sums = {row.get("data_sha256")
                for row in csv.DictReader(io.StringIO(raw.decode("utf-8"), newline=""))}
    except (UnicodeDecodeError, csv.Error):
        return None
    return sums.pop() if len(sums) == 1 else None


BASELINES_SUM = "baselines_sha256"  # the key of experiment.json that vouches for baselines.csv


def _recorded_baselines_sum(exp_dir: Path) -> str | None:
    try:
        record = read_json(exp_dir / "experiment.json", "experiment", exp_dir)
    except (OSError, ValueError):
        return None
    value = record.get(BASELINES_SUM) if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def _record_baselines_sum(exp_dir: Path) -> None:
    """Record the sha256 of ``baselines.csv`` in ``experiment.json`` (where it differs)."""
    raw = _read_optional(exp_dir / "baselines.csv", exp_dir)
    try:
        record = read_json(exp_dir / "experiment.json", "experiment", exp_dir)
    except (OSError, ValueError):
        return
    if raw is None or not isinstance(record, dict):
        return
    if record.get(BASELINES_SUM) != sha256_bytes(raw):
        atomic_write_json(exp_dir / "experiment.json", {**record,
                                                        BASELINES_SUM: sha256_bytes(raw)})


def prepare(exp_dir: Path, profile: Profile, schedules: list[NamedSchedule],
            parameters: int, cells: list[tuple[str, int, int]],
            command: str | None = None) -> list[str]:
    """Identity, grid (``cells`` join ``grid.json``) and baselines of an experiment folder
    (created here); notes back."""
    from bench.store import StoreError

    check_experiment_folder(exp_dir)
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create results folder {exp_dir}: {exc.strerror or exc}") from exc
    lock = experiment_lock(exp_dir, replace=True)
    with lock:
        notes = list(lock.notes)
        remove_stale_temporaries(exp_dir)  # every writer of these files holds this lock
        existed = os.path.lexists(exp_dir / "baselines.csv")
        notes += record_experiment(exp_dir, profile, parameters, command)
        update_grid(exp_dir, {s.name: schedule_info(s) for s in schedules}, cells)
        why = write_baselines(exp_dir, profile)
        if why is not None and existed:
            notes.append(f"baselines.csv recomputed: {why}")
        _record_baselines_sum(exp_dir)
    return notes

"""``bench run`` from a resolved profile to finished tables: check, prepare, execute, tabulate.

The order matters for a user's mistakes: the data are loaded and the model is checked with
one dry step (``bench.build.dry_step``) before the results folder is created, so a wrong
model or data file costs a second and leaves nothing behind. Then the folder is prepared
(``bench.prepare``), the grid is planned (``bench.plan``) and handed to an executor
(``bench.local_executor`` or ``bench.ray_executor``), which run jobs (``bench.job``); after
every finished job the experiment tables are rebuilt (``bench.tables``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from bench.build import DryRun, dry_step, steps_per_epoch
from bench.data import data_facts, data_line, load_data, missing_warning
from bench.job import JobOutcome
from bench.plan import Cell, grid_cells, longest_first, plan_cells, shard, units
from bench.prepare import experiment_lock, prepare
from bench.profile import Profile
from bench.progress import Progress, SafeStream
from bench.stopping import graceful_stop, stop_reason, stop_requested
from bench.store import RunDir
from bench.tables import write_tables
from bench.trunks import trunk_units
from schedules import NamedSchedule


def check_before_run(profile: Profile, schedules: list[NamedSchedule], stream=None) -> DryRun:
    """Data loaded and described, the model checked on one batch; raises before anything is
    written. The data line and a warning about the missing-value marker go to ``stream``."""
    data = load_data(profile, torch.device("cpu"))
    if stream is not None:
        facts = data_facts(data)
        print(data_line(facts), file=stream)
        warning = missing_warning(facts)
        if warning:
            print(warning, file=stream)
    checked = dry_step(profile, schedules[0], data)
    if stream is not None:
        for warning in checked.warnings:
            print(warning, file=stream)
    return checked


def run_grid(profile: Profile, schedules: list[NamedSchedule], exp_dir: Path, *,
             executor: str = "local", address: str | None = None, shard_spec: str | None = None,
             stream=None, checked: DryRun | None = None,
             cells: list[Cell] | None = None, command: str | None = None) -> int:
    """Train every unfinished job of the grid (the profile's schedules x budgets x seeds, or
    exactly ``cells``); 0 if all ended, 1 if any run failed or every run diverged, 130 if
    stopped (resumable). ``command`` is the ``bench run`` that trains this experiment (its
    grid left out), recorded for the report."""
    stream = SafeStream.wrap(stream or sys.stderr)  # a closed reader never stops the grid
    exp_dir = Path(exp_dir)
    checked = checked or check_before_run(profile, schedules)
    cells = cells if cells is not None else grid_cells(schedules, profile.budgets, profile.seeds)
    for note in prepare(exp_dir, profile, schedules, checked.parameters, cells, command):
        print(f"note: {note}", file=stream)

    all_jobs = plan_cells(schedules, cells)
    todo = shard(all_jobs, shard_spec) if shard_spec else all_jobs
    items = {s.name: s for s in schedules}
    done_epochs = {}
    for job in todo:
        try:
            status = RunDir(exp_dir / "runs" / job.key).read_status() or {}
        except ValueError:
            status = {}
        done_epochs[job.key] = min(status.get("epochs_done", 0), job.epochs)

    bar = Progress(todo, done_epochs, stream)
    outcomes: list[JobOutcome] = []
    said: set[str] = set()  # each note once per invocation

    def say_note(text: str) -> None:
        if text not in said:
            said.add(text)
            bar.message(f"note: {text}")

    def finished(outcome: JobOutcome) -> None:
        outcomes.append(outcome)
        for text in outcome.notes:
            say_note(text)
        if outcome.status != "skipped":
            tail = f" ({outcome.message})" if outcome.message else ""
            bar.message(f"{outcome.status:9s} {outcome.key}: {outcome.epochs_done} epochs"
                        f" in {outcome.seconds:.1f} s{tail}")
        # Damaged runs the tables meet now may still be redone by this grid (with their own
        # note): what is still damaged at the end is named once, below.
        with experiment_lock(exp_dir):
            write_tables(exp_dir)
        bar.run_done(outcome.key)

    torch.set_num_threads(profile.threads_per_run())
    if profile.fuse > 1:
        work = units(todo, profile.fuse)
    else:  # runs that share a trunk train it once (bench.trunks)
        spe = steps_per_epoch(profile, load_data(profile, torch.device("cpu")))
        work = trunk_units(todo, items, spe)
    if executor == "ray" or profile.jobs > 1:
        work = longest_first(work, done_epochs)
    with graceful_stop():
        try:
            if executor == "ray":
                from bench.ray_executor import run_on_ray

                run_on_ray(work, items, profile, exp_dir, address, bar.epoch, finished,
                           stop_requested)
            else:
                from bench.local_executor import run_local

                run_local(work, items, profile, exp_dir, bar.epoch, finished)
        finally:
            bar.close()

    with experiment_lock(exp_dir):
        problems = write_tables(exp_dir)
    for problem in problems:
        say_note(problem)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    pending = len(todo) - len(outcomes)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{len(todo)} runs: {summary or 'none'}"
          + (f", {pending} not started" if pending else "")
          + f"; tables in {exp_dir}/", file=stream)
    if stop_requested():
        print(f"stopped by {stop_reason()}; run the same command again to resume",
              file=stream)
        return 130
    diverged = all_diverged(exp_dir, todo)
    if diverged:
        print(f"error: {diverged}", file=stream)
        return 1
    return 1 if counts.get("failed") else 0


def all_diverged(exp_dir: Path, jobs) -> str | None:
    """One line when every job of the grid has diverged (this time or before), else None.

    Then no schedule has a result, and the cause is almost never the schedule: it is the
    model (its output scale, initialisation, a division) or a learning rate too high for
    it under every schedule."""
    reasons = []
    for job in jobs:
        try:
            status = RunDir(exp_dir / "runs" / job.key).read_status() or {}
        except ValueError:
            return None
        if status.get("status") != "diverged":
            return None
        reasons.append((job.key, str(status.get("message", ""))))
    if not reasons:
        return None
    key, first = reasons[0]
    example = f"{key}: {first}" if first else key
    return (f"every run diverged ({len(reasons)} of {len(reasons)}; {example}): no schedule "
            "has a result. When every schedule diverges the cause is usually the model (its "
            "output scale or initialisation) or a learning rate too high for it, not the "
            "schedule; run one schedule for a few epochs, e.g. --schedules constant "
            "--budgets 5 --seeds 1, to find it")

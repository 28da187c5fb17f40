"""Running a grid: plan jobs, hand them to an executor, keep the experiment tables current.

Executors: ``local`` runs jobs one after another in this process with every CPU thread, or
with ``--jobs N`` in N worker processes that divide the threads among them; ``ray`` sends
them to a Ray cluster (``bench.ray_executor``). All of them call ``runner.execute_jobs``,
so results, skip-and-resume and locking behave the same everywhere.

Ctrl-C (or SIGTERM, as a cluster sends on pre-emption) once: every running job finishes its
current epoch, saves, and the grid stops. Twice: stop at once; the last completed epoch of
every run is already on disk. Worker processes die with the driver.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import torch

from bench import runner
from bench.config import ConfigError, to_dict
from bench.experiment import Profile
from bench.plan import Job, plan_jobs, shard, units
from bench.progress import Progress
from bench.store import (
    FileLock,
    RunDir,
    StoreError,
    atomic_write_json,
    atomic_write_text,
    read_json,
    rows_to_csv,
)
from bench.tables import update_grid, write_tables
from schedules import NamedSchedule
from stforecast.baselines import BASELINES, evaluate_baseline


def check_experiment(exp_dir: Path, profile: Profile) -> None:
    """Refuse to mix runs of different datasets, models or training settings in one folder."""
    fixed = {"dataset": runner.dataset_identity(profile), "model": to_dict(profile.model),
             "train": to_dict(profile.train)}
    path = exp_dir / "experiment.json"
    if path.exists():
        try:
            old = read_json(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable ({exc}); move it aside to start "
                              "afresh") from None
        diff = [k for k in fixed if old.get(k) != fixed[k]]
        if diff:
            raise ConfigError(
                f"{exp_dir} holds runs with other {', '.join(diff)} settings "
                f"({path}); use --experiment NAME for a new experiment folder")
        return
    atomic_write_json(path, fixed)


def write_baselines(exp_dir: Path, profile: Profile) -> None:
    """Historical average and persistence on val and test, once per experiment."""
    path = exp_dir / "baselines.csv"
    if path.exists():
        return
    data = runner.load_data(profile, torch.device("cpu"))
    rows = []
    for name in BASELINES:
        for split in ("val", "test"):
            rows.append({"baseline": name, "split": split, **evaluate_baseline(name, data, split)})
    atomic_write_text(path, rows_to_csv(rows))


def schedule_info(item: NamedSchedule) -> dict:
    spec = item.spec
    return {"summary": item.summary, "groups": list(item.groups), "spec": spec.to_dict(),
            "hyperparameters": spec.hyperparameters(), "budget_dependent": spec.budget_dependent,
            "step_unit": spec.step_unit, "needs_metric": spec.needs_metric}


def experiment_lock(exp_dir: Path) -> FileLock:
    """Serialises read-modify-write of the files all drivers of an experiment share (each run
    folder has a single writer, its run lock's holder)."""
    return FileLock(exp_dir / ".lock", blocking=True)


# -- stopping --------------------------------------------------------------------------------
class _Stop:
    """Set by the first Ctrl-C; checked after each epoch by every running job."""

    requested = False


def _on_sigint(signum, frame) -> None:
    if _Stop.requested:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt
    _Stop.requested = True
    if mp.parent_process() is None:  # the driver speaks; workers just stop
        print("\nstopping after the current epoch (Ctrl-C again to stop now)", file=sys.stderr,
              flush=True)


_STOP_EVENT = None  # shared by the driver and its worker processes (``--jobs N``)


def stop_requested() -> bool:
    if _Stop.requested:
        return True
    return _STOP_EVENT is not None and _STOP_EVENT.is_set()


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the driver dies, so no orphan trains on alone."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        parent = os.getppid()

        def watch():
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()


_EVENTS = None  # the worker's end of the progress queue, set by _init_worker


def _init_worker(threads: int, events, stop_event) -> None:
    global _EVENTS, _STOP_EVENT
    _EVENTS, _STOP_EVENT = events, stop_event
    _die_with_parent()
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, _on_sigint)


def _worker(unit: list[Job], items: dict[str, NamedSchedule], profile: Profile, exp_dir: str):
    return runner.execute_jobs(unit, items, profile, exp_dir, _EVENTS.put, stop_requested)


# -- the grid --------------------------------------------------------------------------------
def run_grid(profile: Profile, schedules: list[NamedSchedule], exp_dir: Path, *, jobs: int = 1,
             executor: str = "local", address: str | None = None, shard_spec: str | None = None,
             stream=None) -> int:
    """Train every unfinished job of the grid; 0 if all ended, 1 if any run failed."""
    stream = stream or sys.stderr
    exp_dir = Path(exp_dir)
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create results folder {exp_dir}: {exc.strerror or exc}") from exc
    runner.load_data(profile, torch.device("cpu"))  # data errors surface before any training
    with experiment_lock(exp_dir):
        check_experiment(exp_dir, profile)
    cells = [(s.name, b, seed)
             for s in schedules for b in profile.budgets for seed in profile.seeds]
    with experiment_lock(exp_dir):
        update_grid(exp_dir, {s.name: schedule_info(s) for s in schedules}, cells)
    write_baselines(exp_dir, profile)

    all_jobs = plan_jobs(schedules, profile.budgets, profile.seeds)
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
    outcomes: list[runner.JobOutcome] = []

    def finished(outcome: runner.JobOutcome) -> None:
        outcomes.append(outcome)
        for note in outcome.notes:
            bar.message(f"note: {note}")
        if outcome.status != "skipped":
            tail = f" ({outcome.message})" if outcome.message else ""
            bar.message(f"{outcome.status:9s} {outcome.key}: {outcome.epochs_done} epochs"
                        f" in {outcome.seconds:.1f} s{tail}")
        with experiment_lock(exp_dir):
            problems = write_tables(exp_dir)
        for problem in problems:
            bar.message(f"note: {problem}")
        bar.run_done(outcome.key)

    torch.set_num_threads(profile.threads_per_run())
    previous = signal.signal(signal.SIGINT, _on_sigint)
    previous_term = signal.signal(signal.SIGTERM, _on_sigint)  # pre-emption: save and stop
    _Stop.requested = False
    try:
        work = units(todo, profile.fuse)
        if executor == "ray":
            from bench.ray_executor import run_on_ray

            run_on_ray(work, items, profile, exp_dir, address, bar.epoch, finished,
                       stop_requested)
        elif jobs <= 1:
            for unit in work:
                if stop_requested():
                    break
                for outcome in runner.execute_jobs(unit, items, profile, str(exp_dir),
                                                   bar.epoch, stop_requested):
                    finished(outcome)
        else:
            _run_pool(work, items, profile, exp_dir, jobs, bar, finished)
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
        bar.close()

    with experiment_lock(exp_dir):
        write_tables(exp_dir)
    counts = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    pending = len(todo) - len(outcomes)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{len(todo)} runs: {summary or 'none'}"
          + (f", {pending} not started" if pending else "")
          + f"; tables in {exp_dir}/", file=stream)
    if stop_requested():
        print("stopped by Ctrl-C; run the same command again to resume", file=stream)
        return 130
    return 1 if counts.get("failed") else 0


def _run_pool(work, items, profile, exp_dir, jobs, bar, finished) -> None:
    global _STOP_EVENT
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    events = ctx.Queue()
    # A signal handler only sets a flag; the loop below passes it on to the workers, which
    # may not have received the signal themselves (SIGTERM sent to the driver alone).
    stop_event = _STOP_EVENT = ctx.Event()
    pump_stop = threading.Event()

    def pump():
        while not pump_stop.is_set():
            try:
                event = events.get(timeout=0.2)
            except Exception:
                continue
            bar.epoch(event)

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    try:
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(profile.threads_per_run(), events,
                                           stop_event)) as pool:
            pending = {}
            waiting = list(work)
            while waiting or pending:
                while waiting and len(pending) < jobs and not stop_requested():
                    unit = waiting.pop(0)
                    pending[pool.submit(_worker, unit, items, profile, str(exp_dir))] = unit
                if not pending:
                    break
                if _Stop.requested and not stop_event.is_set():
                    stop_event.set()
                done, _ = wait(pending, return_when=FIRST_COMPLETED, timeout=0.5)
                for fut in done:
                    unit = pending.pop(fut)
                    try:
                        outcomes = fut.result()
                    except StoreError:
                        # The disk is full or unwritable for everyone: stop the others after
                        # their epoch instead of letting them finish whole runs first.
                        stop_event.set()
                        for other in pending:
                            other.cancel()
                        raise
                    except Exception as exc:  # a worker process died
                        outcomes = [runner.JobOutcome(job.key, "failed", 0,
                                                      f"worker process died: {exc}")
                                    for job in unit]
                    for outcome in outcomes:
                        finished(outcome)
    finally:
        pump_stop.set()
        pumper.join()
        _STOP_EVENT = None

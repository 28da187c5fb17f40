"""Executing one training job: build, resume if possible, train, record atomically.

``execute_jobs`` is a plain function of picklable arguments, so the same code runs in the
driver process, in worker processes (``--jobs N``) and as a Ray task. A job is the only
writer of its run folder and holds an exclusive lock on it while it trains: the operating
system drops the lock when the holder dies, so a killed run never blocks a restart.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.config import to_dict
from bench.experiment import Profile, config_hash
from bench.plan import Job
from bench.store import FileLock, RunDir, StoreError, atomic_torch_save, atomic_write_json
from schedules import NamedSchedule
from stforecast.datasets import load_dataset
from stforecast.engine import Diverged, TrainConfig, Trainer, resolve_device, seed_everything
from stforecast.fused import FusedTrainer
from stforecast.models import DataSpec, build_model, count_parameters
from stforecast.windows import SplitConfig, WindowedData

_DATA_CACHE: dict[tuple, WindowedData] = {}


@dataclass
class JobOutcome:
    """What the driver learns about a job; records stay in the run folder."""

    key: str
    status: str            # finished | diverged | failed | skipped | locked
    epochs_done: int = 0
    message: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def load_data(profile: Profile, device: torch.device) -> WindowedData:
    """The windowed dataset, built once per process and device."""
    ds = profile.dataset
    key = (repr(to_dict(ds)), str(device))
    if key not in _DATA_CACHE:
        dataset = load_dataset(ds.name, ds.data_dir, ds.options)
        split = SplitConfig(ds.train_fraction, ds.val_fraction, ds.input_len, ds.output_len)
        _DATA_CACHE[key] = WindowedData(dataset, split, device)
    return _DATA_CACHE[key]


def run_payload(profile: Profile, item: NamedSchedule, job: Job) -> dict[str, Any]:
    """The resolved config that determines a run's records; its hash guards resumption.

    Budgets read off a shared prefix are not part of it: extending such a run to a longer
    budget continues the same lr path.
    """
    return {
        "dataset": dataset_identity(profile),
        "model": to_dict(profile.model),
        "train": to_dict(profile.train),
        "schedule": {"name": item.name, **item.spec.to_dict()},
        "seed": job.seed,
        "epochs": None if job.shared_prefix else job.epochs,
    }


def dataset_identity(profile: Profile) -> dict[str, Any]:
    """The dataset settings that decide the data; where the files live does not."""
    return {k: v for k, v in to_dict(profile.dataset).items() if k != "data_dir"}


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, hardware and commit, recorded with every run."""
    import numpy
    import pandas

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "git_commit": git_commit(),
    }
    try:
        import schedulefree

        env["schedulefree"] = getattr(schedulefree, "__version__", "installed")
    except ImportError:
        pass
    return env


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def job_done(run: RunDir, job: Job, digest: str) -> tuple[bool, str | None]:
    """Whether the run folder already holds this job's complete result.

    Returns ``(done, problem)``; ``problem`` names a damaged or mismatching file that forces
    the run to be redone.
    """
    try:
        status = run.read_status()
    except ValueError as exc:
        return False, str(exc)
    if status is None:
        return False, None
    if status.get("config_hash") != digest:
        return False, (f"{run.status}: config hash {status.get('config_hash')} does not match "
                       f"the current config ({digest})")
    if status["status"] not in ("finished", "diverged"):
        return False, None
    if status["status"] == "finished" and status.get("epochs_done", 0) < job.epochs:
        return False, None  # a shared-prefix run to be extended to a longer budget
    try:
        rows = run.read_records()
    except ValueError as exc:
        return False, str(exc)
    if len(rows) != status.get("epochs_done"):
        return False, f"{run.records}: {len(rows)} rows, status says {status.get('epochs_done')}"
    return True, None


class Interrupted(Exception):
    """Raised after an epoch's state is saved when the user asked the grid to stop."""


class RunSession:
    """One job while it executes: its run folder, lock, resolved config and trainer.

    ``open()`` takes the run's lock and only then looks at what the folder holds, so the
    decision to skip, resume or redo a run is made by the process that will act on it.
    """

    def __init__(self, job: Job, item: NamedSchedule, profile: Profile, exp_dir: str) -> None:
        self.job, self.item, self.profile = job, item, profile
        self.run = RunDir(Path(exp_dir) / "runs" / job.key)
        self.payload = run_payload(profile, item, job)
        self.digest = config_hash(self.payload)
        self.lock = FileLock(self.run.lock, blocking=False)
        self.done, self.problem = False, None
        self.notes: list[str] = []
        self.trainer: Trainer | None = None
        self.fused = 1  # members trained together with this run
        self.start = time.perf_counter()

    def open(self) -> JobOutcome | None:
        """Lock the run and check its folder; an outcome when there is nothing to train."""
        if not self.lock.acquire():
            return JobOutcome(self.job.key, "locked", 0,
                              f"{self.run.root} is being trained by another process")
        self.done, self.problem = job_done(self.run, self.job, self.digest)
        self.notes = [self.problem] if self.problem else []
        if self.done:
            self.lock.release()
            status = self.run.read_status()
            return JobOutcome(self.job.key, "skipped", status["epochs_done"],
                              status.get("message", ""))
        return None

    def saved_epoch(self) -> int:
        """The epoch training will resume from, read from the status file (no weights)."""
        if self.problem is not None or not self.run.checkpoint.exists():
            return 0
        try:
            return int((self.run.read_status() or {}).get("epochs_done", 0))
        except ValueError:
            return 0

    # -- outcomes -----------------------------------------------------------------------
    def outcome(self, status: str, message: str = "") -> JobOutcome:
        epochs = len(self.trainer.records) if self.trainer is not None else 0
        return JobOutcome(self.job.key, status, epochs, message,
                          time.perf_counter() - self.start, self.notes)

    # -- training -----------------------------------------------------------------------
    def start_trainer(self) -> Trainer:
        """A trainer at the run's last saved epoch (or a fresh one), with the run marked
        running; damaged or mismatching state is discarded with a note."""
        profile, job, item, run = self.profile, self.job, self.item, self.run
        device = resolve_device(profile.device)
        data = load_data(profile, device)
        spec = DataSpec(num_nodes=data.num_nodes, input_len=data.split.input_len,
                        output_len=data.split.output_len,
                        steps_per_day=1440 // data.dataset.interval_minutes,
                        adjacency=data.dataset.adjacency)
        steps_per_epoch = -(-data.num_windows("train") // profile.train.batch_size)
        train_cfg = TrainConfig(**to_dict(profile.train))

        def fresh() -> Trainer:
            seed_everything(job.seed)  # same initial weights for every schedule of a seed
            model = build_model(profile.model.name, spec, profile.model.options).to(device)
            optimizer = item.spec.make_optimizer(model.parameters())
            scheduler = item.spec.build(optimizer, job.epochs, steps_per_epoch)
            return Trainer(model, optimizer, scheduler, data, step_unit=item.spec.step_unit,
                           needs_metric=item.spec.needs_metric, seed=job.seed, config=train_cfg)

        trainer = fresh()
        if self.problem is not None:
            if run.checkpoint.exists():
                run.checkpoint.unlink()
                self.notes.append(f"{run.checkpoint}: discarded; the run is redone from epoch 0")
        elif run.checkpoint.exists():
            try:
                trainer.load_state_dict(torch.load(run.checkpoint, map_location=device,
                                                   weights_only=False))
            except Exception as exc:
                self.notes.append(f"{run.checkpoint}: unreadable checkpoint "
                                  f"({type(exc).__name__}); discarded, the run is redone from "
                                  f"epoch 0")
                run.checkpoint.unlink()
                trainer = fresh()
        if trainer.epoch == 0:
            atomic_write_json(run.config, {"config": self.payload, "config_hash": self.digest,
                                           "environment": environment(device),
                                           "parameters": count_parameters(trainer.model),
                                           "steps_per_epoch": steps_per_epoch})
        run.write_status(status="running", config_hash=self.digest, epochs_done=trainer.epoch,
                         target_epochs=job.epochs)
        self.trainer = trainer
        return trainer

    def save_epoch(self, record, progress=None) -> None:
        """Checkpoint, records and status after an epoch, each written atomically."""
        tr = self.trainer
        atomic_torch_save(self.run.checkpoint, tr.state_dict())
        self.run.write_records([r.row() for r in tr.records])
        self.run.write_status(status="running", config_hash=self.digest, epochs_done=tr.epoch,
                              target_epochs=self.job.epochs)
        if progress is not None:
            progress({"key": self.job.key, "epoch": tr.epoch, "epochs": self.job.epochs,
                      "val_mae": record.val["mae"], "seconds": record.seconds})

    def finished(self) -> JobOutcome:
        self.run.write_records([r.row() for r in self.trainer.records])
        self.run.write_status(status="finished", config_hash=self.digest,
                              epochs_done=self.trainer.epoch, target_epochs=self.job.epochs,
                              fused=self.fused)
        return self.outcome("finished")

    def diverged(self, exc: Diverged) -> JobOutcome:
        self.run.write_records([r.row() for r in self.trainer.records])
        self.run.write_status(status="diverged", config_hash=self.digest,
                              epochs_done=len(self.trainer.records), diverged_epoch=exc.epoch,
                              target_epochs=self.job.epochs, message=str(exc))
        return self.outcome("diverged", str(exc))

    def interrupted(self) -> JobOutcome:
        return self.outcome("interrupted", "state saved; the same command resumes it")

    def failed(self, exc: Exception) -> JobOutcome:
        message = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):  # the failure itself may be the disk
            self.run.write_status(status="failed", config_hash=self.digest, message=message,
                                  traceback=traceback.format_exc())
        return self.outcome("failed", message)


def run_session(session: RunSession, progress=None, should_stop=None) -> JobOutcome:
    """Train an opened session to its target epoch; never raises for a training failure."""
    job = session.job
    try:
        trainer = session.start_trainer()

        def on_epoch(tr: Trainer, record) -> None:
            session.save_epoch(record, progress)
            if should_stop is not None and should_stop() and tr.epoch < job.epochs:
                raise Interrupted

        try:
            trainer.fit(job.epochs, on_epoch=on_epoch)
        except Diverged as exc:
            return session.diverged(exc)
        return session.finished()
    except StoreError:
        raise  # a full disk or unwritable folder ends the grid, not just this run
    except Interrupted:
        return session.interrupted()
    except Exception as exc:  # a bug or resource error in one run must not end the grid
        return session.failed(exc)
    finally:
        session.lock.release()


def execute_job(job: Job, item: NamedSchedule, profile: Profile, exp_dir: str,
                progress=None, should_stop=None) -> JobOutcome:
    """Train (or finish, or skip) one job.

    ``progress(event)`` is called after every epoch; ``should_stop()`` is polled after each
    epoch's state is on disk, and a true answer ends the job as ``interrupted``.
    """
    session = RunSession(job, item, profile, exp_dir)
    return session.open() or run_session(session, progress, should_stop)


def execute_jobs(jobs: list[Job], items: dict[str, NamedSchedule], profile: Profile,
                 exp_dir: str, progress=None, should_stop=None) -> list[JobOutcome]:
    """Execute a unit of work: one job, or several of equal length trained at once with
    ``FusedTrainer`` (the profile's ``fuse`` > 1).

    Members that are done or locked are reported as such. The rest are fused when there are
    at least two, they resume from the same epoch and the model can be stacked; otherwise
    each trains on its own, still holding its lock.
    """
    outcomes: dict[str, JobOutcome] = {}
    sessions = []
    for job in jobs:
        session = RunSession(job, items[job.schedule], profile, exp_dir)
        early = session.open()
        if early is not None:
            outcomes[job.key] = early
        else:
            sessions.append(session)
    if len(sessions) < 2 or len({s.saved_epoch() for s in sessions}) > 1 or \
            not FusedTrainer.can_stack(profile.model.name):
        for session in sessions:
            outcomes[session.job.key] = run_session(session, progress, should_stop)
        return [outcomes[j.key] for j in jobs]
    try:
        by_trainer = {id(s.start_trainer()): s for s in sessions}
        for session in sessions:
            session.fused = len(sessions)
        fused = FusedTrainer([s.trainer for s in sessions])
        target = jobs[0].epochs
        while fused.members and fused.members[0].epoch < target:
            for trainer, result in fused.run_epoch():
                session = by_trainer[id(trainer)]
                if isinstance(result, Diverged):
                    outcomes[session.job.key] = session.diverged(result)
                else:
                    session.save_epoch(result, progress)
            if should_stop is not None and should_stop() and fused.members and \
                    fused.members[0].epoch < target:
                raise Interrupted
        for trainer in fused.members:
            session = by_trainer[id(trainer)]
            outcomes[session.job.key] = session.finished()
    except StoreError:
        raise
    except Interrupted:
        for session in sessions:
            outcomes.setdefault(session.job.key, session.interrupted())
    except Exception as exc:
        for session in sessions:
            outcomes.setdefault(session.job.key, session.failed(exc))
    finally:
        for session in sessions:
            session.lock.release()
    return [outcomes[j.key] for j in jobs]

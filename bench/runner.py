"""Executing one training job: build, resume if possible, train, record atomically.

``execute_job`` is a plain function of picklable arguments, so the same code runs in the
driver process, in worker processes (``--jobs N``) and as a Ray task. It is the only writer of
its run folder and holds an exclusive lock on it while it trains: the operating system drops
the lock when the holder dies, so a killed run never blocks a restart.
"""

from __future__ import annotations

import fcntl
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
from bench.store import RunDir, StoreError, atomic_torch_save, atomic_write_json
from schedules import NamedSchedule
from stforecast.datasets import load_dataset
from stforecast.engine import Diverged, Trainer, TrainConfig, resolve_device, seed_everything
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


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``<run>/lock``; released when the holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            return False
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{platform.node()} {os.getpid()}\n".encode())
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


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


def execute_job(job: Job, item: NamedSchedule, profile: Profile, exp_dir: str,
                progress=None, should_stop=None) -> JobOutcome:
    """Train (or finish, or skip) one job; never raises for a training failure.

    ``progress(event)`` is called after every epoch; ``should_stop()`` is polled after each
    epoch's state is on disk, and a true answer ends the job as ``interrupted``.
    """
    run = RunDir(Path(exp_dir) / "runs" / job.key)
    payload = run_payload(profile, item, job)
    digest = config_hash(payload)
    done, problem = job_done(run, job, digest)
    notes = [problem] if problem else []
    if done:
        status = run.read_status()
        return JobOutcome(job.key, "skipped", status["epochs_done"], status.get("message", ""))
    lock = RunLock(run.lock)
    try:
        acquired = lock.acquire()
    except OSError as exc:
        raise StoreError(f"cannot write {run.lock}: {exc.strerror or exc}") from exc
    if not acquired:
        return JobOutcome(job.key, "locked", 0, f"{run.root} is being trained by another process")
    try:
        return _train(job, item, profile, run, payload, digest, problem, notes, progress,
                      should_stop)
    except StoreError:
        raise  # a full disk or unwritable folder ends the grid, not just this run
    except Interrupted:
        status = run.read_status() or {}
        return JobOutcome(job.key, "interrupted", status.get("epochs_done", 0),
                          "state saved; the same command resumes it", notes=notes)
    except Exception as exc:  # a bug or resource error in one run must not end the grid
        message = f"{type(exc).__name__}: {exc}"
        try:
            run.write_status(status="failed", config_hash=digest, message=message,
                             traceback=traceback.format_exc())
        except OSError:
            pass
        return JobOutcome(job.key, "failed", 0, message, notes=notes)
    finally:
        lock.release()


def _train(job: Job, item: NamedSchedule, profile: Profile, run: RunDir, payload: dict,
           digest: str, problem: str | None, notes: list[str], progress,
           should_stop) -> JobOutcome:
    start = time.perf_counter()
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
    if problem is not None:
        if run.checkpoint.exists():
            run.checkpoint.unlink()
            notes.append(f"{run.checkpoint}: discarded; the run is redone from epoch 0")
    elif run.checkpoint.exists():
        try:
            trainer.load_state_dict(torch.load(run.checkpoint, map_location=device,
                                               weights_only=False))
        except Exception as exc:
            notes.append(f"{run.checkpoint}: unreadable checkpoint ({type(exc).__name__}); "
                         f"discarded, the run is redone from epoch 0")
            run.checkpoint.unlink()
            trainer = fresh()

    if trainer.epoch == 0:
        atomic_write_json(run.config, {"config": payload, "config_hash": digest,
                                       "environment": environment(device),
                                       "parameters": count_parameters(trainer.model),
                                       "steps_per_epoch": steps_per_epoch})
    run.write_status(status="running", config_hash=digest, epochs_done=trainer.epoch,
                     target_epochs=job.epochs)

    def save(tr: Trainer, record) -> None:
        atomic_torch_save(run.checkpoint, tr.state_dict())
        run.write_records([r.row() for r in tr.records])
        run.write_status(status="running", config_hash=digest, epochs_done=tr.epoch,
                         target_epochs=job.epochs)
        if progress is not None:
            progress({"key": job.key, "epoch": tr.epoch, "epochs": job.epochs,
                      "val_mae": record.val["mae"], "seconds": record.seconds})
        if should_stop is not None and should_stop() and tr.epoch < job.epochs:
            raise Interrupted

    try:
        trainer.fit(job.epochs, on_epoch=save)
    except Diverged as exc:
        run.write_records([r.row() for r in trainer.records])
        run.write_status(status="diverged", config_hash=digest, epochs_done=len(trainer.records),
                         diverged_epoch=exc.epoch, target_epochs=job.epochs, message=str(exc))
        return JobOutcome(job.key, "diverged", len(trainer.records), str(exc),
                          time.perf_counter() - start, notes)
    run.write_records([r.row() for r in trainer.records])
    run.write_status(status="finished", config_hash=digest, epochs_done=trainer.epoch,
                     target_epochs=job.epochs)
    return JobOutcome(job.key, "finished", trainer.epoch, "", time.perf_counter() - start, notes)

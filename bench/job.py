"""One job of the grid: open its run folder, skip, resume or redo it, train, record.

``execute_jobs`` is a plain function of picklable arguments, so the same code runs in the
driver process, in worker processes (``--jobs N``) and as a Ray task. A job is the only
writer of its run folder and holds an exclusive lock on it while it trains: the operating
system drops the lock when the holder dies, so a killed run never blocks a restart. Runs
are built by ``bench.build.build_run``; epochs end in ``Trainer.close_epoch``, for a run
trained alone and for members trained fused alike.

Nothing a run folder holds is reused unverified: every file must match the checksum its
``status.json`` records, records parse with their types, and a checkpoint is read with the
weights-only loader (it cannot execute code). A run that fails any check is redone from epoch 0
with one note naming the file. While a run trains, each save first checks that its folder,
lock and ``config.json`` are still the ones it started with.

A run folder is used only as what its path names: every folder from the experiment folder
down is a real folder (a link, or a file where a folder is expected, is replaced by an empty
folder with a note: nothing is written through a link), the lock is a regular file opened
without following links, and a folder whose ``config.json`` describes another run (copied
from elsewhere, with or without its ``config_hash``) is foreign and redone.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from bench.build import build_run, steps_per_epoch
from bench.data import load_data
from bench.identity import config_hash, describe_changes, run_payload
from bench.plan import Job
from bench.profile import Profile
from bench.provenance import environment
from bench.safe_files import make_real_folder, parse_json, remove_entry
from bench.store import (
    FileLock,
    RunDir,
    StoreError,
    json_bytes,
    load_weights_only,
    remove_stale_temporaries,
    sha256_bytes,
    torch_bytes,
)
from bench.trunks import Forker, Pending, Shadow
from schedules import NamedSchedule
from stforecast.engine import Diverged, Trainer, resolve_device
from stforecast.fused import FusedTrainer
from stforecast.models import count_parameters


@dataclass
class JobOutcome:
    """What the driver learns about a job; records stay in the run folder."""

    key: str
    status: str            # finished | diverged | failed | skipped | locked
    epochs_done: int = 0
    message: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def job_done(run: RunDir, job: Job, payload: dict, digest: str) -> tuple[bool, str | None]:
    """Whether the run folder already holds this job's complete result.

    Returns ``(done, problem)``; ``problem`` names a damaged file (a checksum that differs
    from ``status.json``, a file missing or unvouched for, a cell of the wrong type), or what
    changed since a stale run was trained, and forces the run to be redone. A run without
    problems has its status adopted by ``run``, so that resuming continues its checksums.
    """
    try:
        status = run.read_status()
    except ValueError as exc:
        return False, str(exc)
    foreign = run.binding_problem(status, foreign_only=True)  # copied from another run
    if foreign is not None:
        return False, foreign
    if status is not None and status.get("config_hash") != digest:
        return False, f"{run.root}: stale, {_what_changed(run, payload)}"
    problem = run.verify(status) or run.binding_problem(status)
    if problem is not None:
        return False, problem
    rows = None
    if status is not None and run.vouched_by(status, "records.csv"):
        try:
            rows = run.read_records()
        except ValueError as exc:
            return False, str(exc)
    run.adopt(status)
    if status is None or status["status"] not in ("finished", "diverged"):
        return False, None
    if rows is None:
        return False, f"{run.records}: missing"
    if len(rows) != status["epochs_done"]:
        return False, f"{run.records}: {len(rows)} rows, status says {status['epochs_done']}"
    if status["status"] == "finished" and status["epochs_done"] < job.epochs:
        return False, None  # a shared-prefix run to be extended to a longer budget
    return True, None


def _what_changed(run: RunDir, payload: dict) -> str:
    """The keys of the run's recorded config that differ from the current one."""
    try:
        old = parse_json(run.read("config.json"), run.config).get("config")
    except (OSError, ValueError, AttributeError):
        old = None
    if not isinstance(old, dict):
        return "its recorded config is missing or unreadable"
    text = describe_changes(old, payload)
    return f"changed since it was trained: {text}" if text else "its config hash differs"


class Interrupted(Exception):
    """Raised after an epoch's state is saved when the user asked the grid to stop."""


class RunFolderChanged(Exception):
    """The run's folder, lock or config.json went away or changed while it trained."""


class RunSession:
    """One job while it executes: its run folder, lock, resolved config and trainer.

    ``open()`` takes the run's lock and only then looks at what the folder holds, so the
    decision to skip, resume or redo a run is made by the process that will act on it.
    """

    def __init__(self, job: Job, item: NamedSchedule, profile: Profile, exp_dir: str) -> None:
        self.job, self.item, self.profile = job, item, profile
        self.exp_dir = Path(exp_dir)
        self.run = RunDir(self.exp_dir / "runs" / job.key, base=self.exp_dir)
        self.payload = run_payload(profile, item, job)
        self.digest = config_hash(self.payload)
        self.lock = FileLock(self.run.lock, blocking=False, replace=True)
        self.done, self.problem = False, None
        self.notes: list[str] = []
        self.trainer: Trainer | None = None
        self.fused = 1  # members trained together with this run
        # Where a forked run's first epochs came from (``bench.trunks``), kept in every
        # status it writes: ``{"forked_from": key, "fork_epoch": n}``.
        self.lineage: dict = {}
        self.start = time.perf_counter()

    def open(self) -> JobOutcome | None:
        """Lock the run and check its folder; an outcome when there is nothing to train."""
        replaced = make_real_folder(self.run.root, self.exp_dir)  # no write through a link
        if not self.lock.acquire():
            return JobOutcome(self.job.key, "locked", 0,
                              f"{self.run.root} is being trained by another process")
        replaced += self.lock.notes
        remove_stale_temporaries(self.run.root)  # a killed writer's half files; we hold the lock
        self.done, self.problem = job_done(self.run, self.job, self.payload, self.digest)
        if replaced and not self.problem:
            self.problem = "; ".join(replaced)
        self.notes = [f"{self.problem}; the run is redone from epoch 0"] if self.problem else []
        if self.problem:
            self.done = False
        if self.done:
            status = self.run.read_status() or {}  # read while still holding the lock
            self.lock.release()
            return JobOutcome(self.job.key, "skipped", int(status.get("epochs_done", 0)),
                              str(status.get("message", "")))
        return None

    def saved_epoch(self) -> int:
        """The epoch training will resume from, read from the status file (no weights)."""
        if self.problem is not None or not os.path.lexists(self.run.checkpoint):
            return 0
        try:
            return int((self.run.read_status() or {}).get("epochs_done", 0))
        except ValueError:
            return 0

    def check_folder(self) -> None:
        """Raise ``RunFolderChanged`` unless the run's folder still holds our lock file and
        the config.json this run wrote or verified (never recreate a deleted folder)."""
        run = self.run
        try:
            config = run.read("config.json")
        except OSError:
            config = None
        if not self.lock.held_at_path() or config is None or \
                sha256_bytes(config) != run.sums.get("config.json"):
            raise RunFolderChanged(f"{run.root}: the run folder, its lock or config.json was "
                                   "deleted or replaced while the run trained")

    # -- outcomes -----------------------------------------------------------------------
    def outcome(self, status: str, message: str = "") -> JobOutcome:
        epochs = len(self.trainer.records) if self.trainer is not None else 0
        return JobOutcome(self.job.key, status, epochs, message,
                          time.perf_counter() - self.start, self.notes)

    # -- training -----------------------------------------------------------------------
    def start_trainer(self) -> Trainer:
        """A trainer at the run's last saved epoch (or a fresh one), with the run marked
        running; damaged or stale state is discarded with a note. The checkpoint is read
        with the weights-only loader after its checksum is checked again."""
        profile, job, item, run = self.profile, self.job, self.item, self.run
        data = load_data(profile, resolve_device(profile.device))

        def fresh() -> Trainer:
            return build_run(profile, item, job.seed, job.epochs, data)

        trainer = fresh()
        if self.problem is None and os.path.lexists(run.checkpoint):
            try:
                raw = run.read("checkpoint.pt")
                want = run.vouched("checkpoint.pt")
                if want and sha256_bytes(raw) not in want:  # changed since open() checked it
                    why = "checksum differs from status.json (edited or damaged)"
                else:
                    why = None
                    # On the CPU: RNG states must stay CPU tensors; the model and optimizer
                    # copy their tensors to the run's device as they load them.
                    trainer.load_state_dict(load_weights_only(raw, map_location="cpu"))
            except Exception as exc:
                why = (f"unreadable checkpoint, refused by the weights-only loader "
                       f"({type(exc).__name__})")
            if why is not None:
                self.notes.append(f"{run.checkpoint}: {why}; discarded, the run is redone "
                                  "from epoch 0")
                trainer = fresh()
        status = dict(status="running", config_hash=self.digest, target_epochs=job.epochs)
        if trainer.epoch == 0:
            # The note from open() (or the one above) says why anything was there. What is
            # not a regular file where a run file belongs goes too, so the writes below can
            # replace it (the entry itself: a link's target is never touched).
            for path in (run.checkpoint, run.records):
                remove_entry(path)
            for path in (run.config, run.status):
                if os.path.lexists(path) and not path.is_symlink() and not path.is_file():
                    remove_entry(path)
            run.sums = {}
            self.lineage = {}
            run.write_files({"config.json": self._config_bytes(trainer)}, epochs_done=0,
                            **status)
        else:
            saved = run.read_status() or {}
            self.lineage = {k: saved[k] for k in ("forked_from", "fork_epoch") if k in saved}
            if "config.json" not in run.sums and run.config.exists():  # a schema-1 status
                run.sums["config.json"] = sha256_bytes(run.read("config.json"))
            run.write_status(epochs_done=trainer.epoch, **status, **self.lineage)
        self.trainer = trainer
        return trainer

    def _config_bytes(self, trainer: Trainer) -> bytes:
        config = {"config": self.payload, "config_hash": self.digest,
                  "environment": environment(trainer.device),
                  "parameters": count_parameters(trainer.model),
                  "steps_per_epoch": steps_per_epoch(self.profile, trainer.data)}
        return json_bytes(config)

    def write_fork(self, parent: Trainer, parent_key: str, state: dict, epoch: int) -> None:
        """Write this run as trained to ``epoch`` on the parent's trunk (``bench.trunks``):
        config, checkpoint and records, then the status vouching for them, exactly what a
        standalone run stopped at that epoch would hold. Training it resumes from there."""
        records = [r.row() for r in parent.records[:epoch]]
        self.lineage = {"forked_from": parent_key, "fork_epoch": epoch}
        self.problem = None  # whatever was wrong with the folder, every file is replaced
        self.run.sums = {}
        self.run.write_files({"config.json": self._config_bytes(parent),
                              "checkpoint.pt": torch_bytes(state),
                              "records.csv": RunDir.records_bytes(records)},
                             status="running", config_hash=self.digest, epochs_done=epoch,
                             target_epochs=self.job.epochs, **self.lineage)

    def save_epoch(self, record, progress=None) -> None:
        """Checkpoint and records after an epoch, then the status vouching for them, each
        written atomically."""
        self.check_folder()
        tr = self.trainer
        self.run.write_files({"checkpoint.pt": torch_bytes(tr.state_dict()),
                              "records.csv": self._records()},
                             status="running", config_hash=self.digest, epochs_done=tr.epoch,
                             target_epochs=self.job.epochs, **self.lineage)
        if progress is not None:
            progress({"key": self.job.key, "epoch": tr.epoch, "epochs": self.job.epochs,
                      "val_mae": record.val["mae"], "seconds": record.seconds})

    def _records(self) -> bytes:
        return RunDir.records_bytes([r.row() for r in self.trainer.records])

    def finished(self) -> JobOutcome:
        self.check_folder()
        self.run.write_files({"records.csv": self._records()}, status="finished",
                             config_hash=self.digest, epochs_done=self.trainer.epoch,
                             target_epochs=self.job.epochs, fused=self.fused, **self.lineage)
        shared = (f"first {self.lineage['fork_epoch']} from {self.lineage['forked_from']}"
                  if self.lineage else "")
        return self.outcome("finished", shared)

    def diverged(self, exc: Diverged) -> JobOutcome:
        self.check_folder()
        self.run.write_files({"records.csv": self._records()}, status="diverged",
                             config_hash=self.digest, epochs_done=len(self.trainer.records),
                             diverged_epoch=exc.epoch, target_epochs=self.job.epochs,
                             message=str(exc), **self.lineage)
        return self.outcome("diverged", str(exc))

    def interrupted(self) -> JobOutcome:
        return self.outcome("interrupted", "state saved; the same command resumes it")

    def failed(self, exc: Exception) -> JobOutcome:
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, RunFolderChanged):
            # Writing a status now would recreate the folder without its config and lock.
            self.notes.append(f"{exc}; the run is marked failed and nothing more is written "
                              "into it (the same command redoes it)")
            return self.outcome("failed", "run folder deleted or replaced while training")
        with contextlib.suppress(OSError):  # the failure itself may be the disk
            self.run.write_status(status="failed", config_hash=self.digest, message=message,
                                  traceback=traceback.format_exc())
        return self.outcome("failed", message)


def run_session(session: RunSession, progress=None, should_stop=None,
                forker: Forker | None = None) -> JobOutcome:
    """Train an opened session to its target epoch; never raises for a training failure.

    With a ``forker``, the runs waiting on this one's trunk are forked off as it trains."""
    job = session.job
    try:
        trainer = session.trainer or session.start_trainer()

        def fork(step) -> None:
            """Forking is a saving, never a reason for the parent to fail: on an error its
            waiting children are let go, to train from epoch 0."""
            try:
                step(trainer)
            except StoreError:
                raise
            except Exception as exc:
                session.notes.append(f"{session.run.root}: forking its children stopped "
                                     f"({type(exc).__name__}: {exc}); they train alone")
                forker.pending.clear()

        if forker is not None:
            fork(forker.start)

        def on_epoch(tr: Trainer, record) -> None:
            session.save_epoch(record, progress)
            if forker is not None:
                fork(forker.after_epoch)
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


def _open_sessions(jobs: list[Job], items: dict[str, NamedSchedule], profile: Profile,
                   exp_dir: str) -> tuple[dict[str, JobOutcome], list[RunSession]]:
    """Lock and check every job's run folder: outcomes of those with nothing to train
    (done or locked), and the opened sessions of the rest, in job order."""
    outcomes: dict[str, JobOutcome] = {}
    sessions: list[RunSession] = []
    for job in jobs:
        session = RunSession(job, items[job.schedule], profile, exp_dir)
        early = session.open()
        if early is not None:
            outcomes[job.key] = early
        else:
            sessions.append(session)
    return outcomes, sessions


def execute_jobs(jobs: list[Job], items: dict[str, NamedSchedule], profile: Profile,
                 exp_dir: str, progress=None, should_stop=None) -> list[JobOutcome]:
    """Execute a unit of work: one job, or several of equal length trained at once with
    ``FusedTrainer`` (the profile's ``fuse`` > 1).

    Members that are done or locked are reported as such. The rest are fused when there are
    at least two and they resume from the same epoch; otherwise each trains on its own, still
    holding its lock. A unit of jobs that share trunks (``bench.trunks``) goes to
    ``execute_tree``.
    ``progress(event)`` is called after every epoch; ``should_stop()`` is polled after each
    epoch's state is on disk, and a true answer ends the jobs as ``interrupted``.
    """
    if any(job.trunk for job in jobs):
        return execute_tree(jobs, items, profile, exp_dir, progress, should_stop)
    outcomes, sessions = _open_sessions(jobs, items, profile, exp_dir)
    if len(sessions) < 2 or len({s.saved_epoch() for s in sessions}) > 1:
        for session in sessions:
            outcomes[session.job.key] = run_session(session, progress, should_stop)
        return [outcomes[j.key] for j in jobs]
    try:
        by_trainer = {id(s.start_trainer()): s for s in sessions}
        if len({s.trainer.epoch for s in sessions}) > 1:
            # A checkpoint may be an epoch ahead of its status (a kill between the two
            # writes): members that resume from different epochs train one at a time.
            for session in sessions:
                outcomes[session.job.key] = run_session(session, progress, should_stop)
            return [outcomes[j.key] for j in jobs]
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


def execute_tree(jobs: list[Job], items: dict[str, NamedSchedule], profile: Profile,
                 exp_dir: str, progress=None, should_stop=None) -> list[JobOutcome]:
    """Execute a tree of jobs that share trunks (``bench.trunks.trunk_units``), parents
    before children: while a job trains, its children that have not started fork off it
    at the first epoch their lr paths differ, then train on from there in turn.

    Every run's lock is taken first, so no other process trains a run while it waits for
    its fork. A child whose parent is done already, diverges, fails or stops first trains
    from epoch 0 (or is reported interrupted); nothing it records depends on where it forked.
    """
    outcomes, opened = _open_sessions(jobs, items, profile, exp_dir)
    sessions = {session.job.key: session for session in opened}
    spe = None
    try:
        for job in jobs:
            session = sessions.get(job.key)
            if session is None:
                continue
            if should_stop is not None and should_stop():
                outcomes[job.key] = session.interrupted()
                session.lock.release()
                continue
            waiting = [sessions[c.key] for c in jobs
                       if c.trunk == job.key and c.key in sessions and
                       sessions[c.key].saved_epoch() == 0]
            forker = None
            if waiting:
                if spe is None:
                    spe = steps_per_epoch(profile, load_data(profile,
                                                             resolve_device(profile.device)))
                forker = Forker(items[job.schedule], job.epochs,
                                [_pending(child, session, spe) for child in waiting], spe)
            session.start = time.perf_counter()  # its own time, not its parent's
            outcomes[job.key] = run_session(session, progress, should_stop, forker)
    finally:
        for session in sessions.values():
            session.lock.release()
    return [outcomes[j.key] for j in jobs]


def _pending(child: RunSession, parent: RunSession, spe: int) -> Pending:
    def write(state: dict, epoch: int) -> None:
        child.write_fork(parent.trainer, parent.job.key, state, epoch)

    return Pending(child.job, Shadow(child.item, child.job.epochs, spe), write)

"""Train each shared lr path once: runs that follow the same path for their first epochs
share those epochs.

Many runs of a grid are identical for a while. ``multistep`` is ``constant`` until its first
milestone; ``plateau_lr1e-3_wd5e-4`` is ``constant`` until its first reduction;
``multistep_scaled`` at 30 epochs shares 9 epochs with ``constant``; warmup-cosine at every
budget shares its warmup; a tuning point shares whatever its settings share. Two runs of one
seed start from the same weights, the same batch order and the same RNG states, so as long
as every optimizer step sees the same hyperparameters they compute the same numbers.

So the runs of one seed and one optimizer are planned as trees (``trunk_units``): a parent is
trained, and a child forks from it at the first epoch where its hyperparameters would
differ. The child's run folder then holds exactly what it would hold had it been trained
alone to that epoch and stopped: the parent's weights, optimizer moments, RNG states and
records, with the child's own scheduler state and param-group settings (``fork_state``). The
ordinary resume path trains it on from there, so a fork is as durable, checkable and
resumable as any run, and its records are bit-identical to a standalone run (tested).

Where the child's path starts to differ is found by stepping *shadows*: the child's and the
parent's genuine torch schedulers, built by the same spec on a one-element stand-in
optimizer and stepped exactly as ``Trainer.advance_schedule`` steps the real ones. A
metric-driven schedule (``ReduceLROnPlateau``) is replayed on the parent's own validation
curve, the numbers the child would have seen, so its fork point is known only while the
parent trains (``Forker``). Fused groups (``--fuse``) and schedule-free AdamW (whose
optimizer keeps a schedule of its own) are trained as before.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from bench.plan import Job
from bench.store import RunDir
from schedules import NamedSchedule
from stforecast.engine import step_scheduler

# Param-group keys that say how an optimizer is implemented, not what a step computes; a
# stand-in optimizer on the CPU may differ from the real one on these (``fused`` on CUDA).
IMPLEMENTATION_KEYS = frozenset({"params", "foreach", "fused", "capturable", "differentiable",
                                 "maximize"})
UNSHARED_OPTIMIZERS = frozenset({"schedulefree_adamw"})


def shareable(item: NamedSchedule) -> bool:
    """Whether a schedule's runs can share trunks (its optimizer keeps no schedule itself)."""
    return item.spec.optimizer not in UNSHARED_OPTIMIZERS


class Shadow:
    """A schedule's genuine torch scheduler on a one-element stand-in optimizer, stepped as
    the engine steps the real one, to tell the hyperparameters every optimizer step of a run
    would use without training it."""

    def __init__(self, item: NamedSchedule, epochs: int, steps_per_epoch: int) -> None:
        spec = item.spec
        self.step_unit, self.needs_metric = spec.step_unit, spec.needs_metric
        self.steps_per_epoch = steps_per_epoch
        self.optimizer = spec.make_optimizer([torch.zeros(1, requires_grad=True)])
        # The keys an optimizer step reads; the ones a scheduler adds (``initial_lr``,
        # ``max_lr``) are its own bookkeeping.
        self.keys = sorted(set(self.optimizer.param_groups[0]) - IMPLEMENTATION_KEYS)
        with _quiet():
            self.scheduler = spec.build(self.optimizer, epochs, steps_per_epoch)

    def settings(self) -> tuple:
        """What the next optimizer step reads, per param group."""
        return tuple(tuple(_frozen(g[k]) for k in self.keys) for g in self.optimizer.param_groups)

    def epoch_path(self) -> tuple:
        """The settings of every step of the coming epoch (a look-ahead on a copy)."""
        if self.step_unit == "epoch":
            return (self.settings(),) * self.steps_per_epoch
        ahead = copy.deepcopy(self)
        path = []
        with _quiet():
            for _ in range(self.steps_per_epoch):
                path.append(ahead.settings())
                ahead._step("step")
        return tuple(path)

    def take_epoch(self) -> tuple:
        """The coming epoch's settings, stepping through it (a path that needs no metric)."""
        path = []
        with _quiet():
            for _ in range(self.steps_per_epoch):
                path.append(self.settings())
                self._step("step")
            self._step("epoch")
        return tuple(path)

    def advance(self, val_mae: float | None) -> None:
        """Step through one epoch as ``Trainer`` does: at the end of every optimizer step,
        then at the epoch's end with its validation MAE (``step_scheduler``)."""
        with _quiet():
            for _ in range(self.steps_per_epoch):
                self._step("step")
            self._step("epoch", val_mae)

    def _step(self, unit: str, val_mae: float | None = None) -> None:
        step_scheduler(self.scheduler, self.step_unit, self.needs_metric, unit, val_mae)


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@contextlib.contextmanager
def _quiet():
    """Stepping a scheduler whose optimizer never steps draws torch's order warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


class PlannedPath:
    """A deterministic schedule's settings, epoch by epoch, computed only as far as a
    comparison asks (most paths part from every other within a few epochs)."""

    def __init__(self, item: NamedSchedule, epochs: int, steps_per_epoch: int) -> None:
        if item.spec.needs_metric:
            raise ValueError(f"'{item.name}' follows a metric: its path is not known ahead")
        self.optimizer = item.spec.optimizer
        self.epochs = epochs
        self._shadow = Shadow(item, epochs, steps_per_epoch)
        self._epochs: list[tuple] = []

    def __getitem__(self, epoch: int) -> tuple:
        while len(self._epochs) <= epoch:
            self._epochs.append(self._shadow.take_epoch())
        return self._epochs[epoch]


def common_epochs(a: PlannedPath, b: PlannedPath) -> int:
    """How many leading epochs two planned paths share exactly."""
    if a.optimizer != b.optimizer:
        return 0
    shared = 0
    while shared < min(a.epochs, b.epochs) and a[shared] == b[shared]:
        shared += 1
    return shared


def shared_epochs(a: NamedSchedule, a_epochs: int, b: NamedSchedule, b_epochs: int,
                  steps_per_epoch: int) -> int:
    """How many leading epochs two schedules with deterministic paths share exactly."""
    return common_epochs(PlannedPath(a, a_epochs, steps_per_epoch),
                         PlannedPath(b, b_epochs, steps_per_epoch))


def trunk_units(jobs: list[Job], items: dict[str, NamedSchedule],
                steps_per_epoch: int) -> list[list[Job]]:
    """The jobs as units of work: trees of jobs that share a trunk, parent before children,
    and every other job alone; the order of first appearance is kept.

    Within one seed and optimizer, each job is a child of the longer (or equally long,
    earlier) deterministic job it shares the most leading epochs with. A metric-driven job
    cannot say in advance how long it follows another path; it becomes a child of the
    longest deterministic job that starts on its settings, and the ``Forker`` finds its
    fork epoch while that job trains. Jobs that share nothing stay alone.
    """
    order = {job.key: i for i, job in enumerate(jobs)}
    parent: dict[str, str] = {}
    planned: dict[str, int] = {}
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        if shareable(items[job.schedule]):
            groups.setdefault((job.seed, items[job.schedule].spec.optimizer), []).append(job)
    for members in groups.values():
        members = sorted(members, key=lambda j: (-j.epochs, order[j.key]))
        paths = {j.key: PlannedPath(items[j.schedule], j.epochs, steps_per_epoch)
                 for j in members if not items[j.schedule].spec.needs_metric}
        for i, job in enumerate(members):
            mine = paths.get(job.key)
            first = None if mine is not None else \
                Shadow(items[job.schedule], job.epochs, steps_per_epoch).epoch_path()
            best, best_shared = None, 0
            for candidate in members[:i]:
                theirs = paths.get(candidate.key)
                if theirs is None:
                    continue  # a metric-driven job is never a parent: its path is unknown
                if mine is not None:
                    shared = common_epochs(mine, theirs)
                else:  # its first epoch alike: then for as long as its metric allows
                    shared = candidate.epochs if theirs[0] == first else 0
                if shared > best_shared:
                    best, best_shared = candidate, shared
            if best is not None:
                parent[job.key] = best.key
                planned[job.key] = best_shared if mine is not None else 0
    children: dict[str, list[Job]] = {}
    for job in jobs:
        if job.key in parent:
            children.setdefault(parent[job.key], []).append(job)

    def tree(job: Job) -> list[Job]:
        out = [replace(job, trunk=parent.get(job.key), trunk_epochs=planned.get(job.key, 0))]
        for child in children.get(job.key, []):
            out += tree(child)
        return out

    return [tree(job) for job in jobs if job.key not in parent]


@dataclass
class Pending:
    """A child that has not forked yet: its job, its shadow and how to write its fork."""

    job: Job
    shadow: Shadow
    write: Callable[[dict, int], None]  # (state, fork epoch)


class Forker:
    """Forks children off a training parent at the first epoch their paths differ.

    ``start(trainer)`` is called once the parent's trainer exists (fresh or resumed: the
    shadows are replayed over the records it already holds, and a child whose path left the
    parent's before that epoch is dropped, to train alone); ``after_epoch(trainer)`` after
    each epoch is saved. A child forks when its next epoch's settings differ from the
    parent's, or when it has reached its own budget on the shared path.
    """

    def __init__(self, parent: NamedSchedule, parent_epochs: int, children: list[Pending],
                 steps_per_epoch: int) -> None:
        self.shadow = Shadow(parent, parent_epochs, steps_per_epoch)
        self.pending = list(children)
        self.forked: list[tuple[Job, int]] = []
        self.dropped: list[Job] = []

    def start(self, trainer) -> None:
        for record in trainer.records:
            self._check(trainer, record.epoch, can_fork=False)
            self._advance(record.val["mae"])
        if self.pending and self.shadow.settings() != _real_settings(trainer, self.shadow):
            # The stand-in does not follow the real scheduler: share nothing, never guess.
            self.dropped += [p.job for p in self.pending]
            self.pending = []
        self._check(trainer, trainer.epoch, can_fork=True)

    def after_epoch(self, trainer) -> None:
        self._advance(trainer.records[-1].val["mae"])
        self._check(trainer, trainer.epoch, can_fork=True)

    def _advance(self, val_mae: float) -> None:
        self.shadow.advance(val_mae)
        for p in self.pending:
            p.shadow.advance(val_mae)

    def _check(self, trainer, epoch: int, can_fork: bool) -> None:
        """Fork (or, before the parent's resume point, drop) every child whose path leaves
        the parent's at ``epoch`` or whose budget ends there."""
        if not self.pending:
            return
        path = self.shadow.epoch_path()
        due = [p for p in self.pending
               if p.job.epochs <= epoch or p.shadow.epoch_path() != path]
        if not due:
            return
        if not can_fork:
            self.dropped += [p.job for p in due]
        else:
            state = trainer.state_dict()
            for p in due:
                p.write(fork_state(state, self.shadow, p.shadow), epoch)
                self.forked.append((p.job, epoch))
        self.pending = [p for p in self.pending if p not in due]


def _real_settings(trainer, shadow: Shadow) -> tuple:
    return tuple(tuple(_frozen(g[k]) for k in shadow.keys)
                 for g in trainer.optimizer.param_groups)


def fork_state(parent_state: dict, parent: Shadow, child: Shadow) -> dict:
    """The child's trainer state at the fork: the parent's weights, optimizer moments, RNG
    states and records, with the child's scheduler state and param-group settings.

    A param group keeps the parent's implementation keys and parameter indices; the keys the
    parent's scheduler added (``max_lr`` of one-cycle) are dropped and the child's own
    settings and bookkeeping (``initial_lr``) put in their place.
    """
    optimizer = dict(parent_state["optimizer"])
    groups = []
    for real, mine, theirs in zip(optimizer["param_groups"],
                                  parent.optimizer.param_groups,
                                  child.optimizer.param_groups):
        added_by_parent = set(mine) - set(parent.keys) - IMPLEMENTATION_KEYS
        group = {k: v for k, v in real.items() if k not in added_by_parent}
        group.update({k: copy.deepcopy(v) for k, v in theirs.items()
                      if k not in IMPLEMENTATION_KEYS})
        groups.append(group)
    optimizer["param_groups"] = groups
    return {**parent_state, "optimizer": optimizer,
            "scheduler": copy.deepcopy(child.scheduler.state_dict())}


def epochs_trained(exp_dir) -> tuple[int, int]:
    """(epochs trained, epochs recorded) over an experiment's run folders: a forked run
    recorded its trunk's epochs without training them."""
    trained = recorded = 0
    for path in sorted(Path(exp_dir).glob("runs/*/*/status.json")):
        try:
            status = RunDir(path.parent).read_status() or {}
        except ValueError:
            continue
        done = status.get("epochs_done", 0)
        fork = status.get("fork_epoch", 0)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                   for v in (done, fork)):
            continue
        recorded += done
        trained += max(done - fork, 0)
    return trained, recorded

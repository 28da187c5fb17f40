"""The run builder: the one function that turns a resolved run into a ``Trainer``.

``build_run(profile, schedule, seed, epochs, data)`` seeds the global RNGs, builds the
profile's model for the data (``DataSpec`` → ``ModelEntry.build``, the same path for a
built-in and a user's model), the schedule's optimizer and its genuine torch scheduler for
the budget, and the trainer. The job lifecycle (``bench.job``), the fused path, Ray workers,
``bench perf`` and the naive reference all build their runs here, so a run means the same
thing everywhere.

``dry_step`` runs the same build once at the start of an experiment, with one forward and
backward on one training batch, so that a model that cannot be built, returns the wrong
shape, has no parameters or produces a non-finite loss is refused in a second with one line
(exit 2), not found broken in run 37.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.config import to_dict
from bench.profile import Profile
from schedules import NamedSchedule
from stforecast.engine import TrainConfig, Trainer, seed_everything
from stforecast.models import DataSpec, ModelError, count_parameters, resolve_model
from stforecast.windows import WindowedData


def data_spec(data: WindowedData) -> DataSpec:
    """What a model is told about the data it is built for."""
    return DataSpec(num_nodes=data.num_nodes, input_len=data.split.input_len,
                    output_len=data.split.output_len,
                    steps_per_day=1440 // data.dataset.interval_minutes,
                    adjacency=data.dataset.adjacency)


def train_config(profile: Profile) -> TrainConfig:
    return TrainConfig(**to_dict(profile.train))


def steps_per_epoch(profile: Profile, data: WindowedData) -> int:
    return -(-data.num_windows("train") // profile.train.batch_size)


def make_model(profile: Profile, data: WindowedData) -> nn.Module:
    """The profile's model for ``data``, on the data's device (RNGs seeded by the caller)."""
    entry = resolve_model(profile.model.name)
    return entry.build(data_spec(data), profile.model.options).to(data.device)


def build_run(profile: Profile, item: NamedSchedule, seed: int, epochs: int,
              data: WindowedData) -> Trainer:
    """A fresh trainer for one run: every schedule of a seed starts from the same weights."""
    seed_everything(seed)
    model = make_model(profile, data)
    optimizer = item.spec.make_optimizer(model.parameters())
    scheduler = item.spec.build(optimizer, epochs, steps_per_epoch(profile, data))
    return Trainer(model, optimizer, scheduler, data, step_unit=item.spec.step_unit,
                   needs_metric=item.spec.needs_metric, seed=seed, config=train_config(profile))


@dataclass(frozen=True)
class DryRun:
    """What the dry step learned about the model."""

    parameters: int


def dry_step(profile: Profile, item: NamedSchedule, data: WindowedData) -> DryRun:
    """Build the first run of the grid and push one training batch forward and backward.

    Raises ``ModelError`` naming the model and what was expected against what was found.
    The global RNGs are left as they were, so nothing downstream depends on this check.
    """
    name = profile.model.name

    def fail(what: str) -> ModelError:
        return ModelError(f"model '{name}': {what}")

    spec = data_spec(data)
    numpy_state = np.random.get_state()
    try:
        return _dry_step(profile, item, data, spec, fail)
    finally:
        np.random.set_state(numpy_state)


def _dry_step(profile, item, data, spec, fail) -> DryRun:
    with torch.random.fork_rng(devices=[]):
        try:
            parameters = count_parameters(make_model(profile, data))
        except ModelError:
            raise
        except Exception as exc:
            raise fail(f"building it for {spec.num_nodes} nodes, {spec.input_len} → "
                       f"{spec.output_len} steps failed: {_one_line(exc)}") from None
        if parameters == 0:
            raise fail("has no trainable parameters (expected at least one tensor with "
                       "requires_grad=True)")
        trainer = build_run(profile, item, profile.seeds[0], max(profile.budgets), data)
        model = trainer.model
        x, y = data.batch(data.starts["train"][:profile.train.batch_size])
        expected = [x.shape[0], spec.output_len, spec.num_nodes, 1]
        trainer.train_mode()
        try:
            with trainer.autocast():
                pred = model(x)
        except Exception as exc:
            raise fail(f"forward on x {list(x.shape)} [B, T_in, N, F] failed: "
                       f"{_one_line(exc)}") from None
        if not isinstance(pred, torch.Tensor):
            raise fail(f"forward returned {type(pred).__name__}, expected a tensor {expected} "
                       "[B, T_out, N, 1]")
        if list(pred.shape) != expected:
            raise fail(f"output shape: expected {expected} [B, T_out, N, 1], found "
                       f"{list(pred.shape)}")
        loss = trainer.loss(pred, y)
        first = float(loss.detach())
        if not math.isfinite(first):
            raise fail(f"the first training loss is not finite ({first}); expected a finite "
                       "masked MAE")
        try:
            loss.backward()
        except Exception as exc:
            raise fail(f"backward failed: {_one_line(exc)}") from None
        if not any(p.grad is not None for p in model.parameters() if p.requires_grad):
            raise fail("no parameter received a gradient from the loss (is the output "
                       "detached from the parameters?)")
    return DryRun(parameters)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"

"""The run builder: the one function that turns a resolved run into a ``Trainer``.

``build_run(profile, schedule, seed, epochs, data)`` seeds the global RNGs, builds the
profile's model for the data (``DataSpec`` → ``ModelEntry.build``, the same path for a
built-in and a user's model), the schedule's optimizer and its genuine torch scheduler for
the budget, and the trainer. The job lifecycle (``bench.job``), the fused path, Ray workers,
``bench perf`` and the naive reference all build their runs here, so a run means the same
thing everywhere.

``dry_step`` runs the same build once at the start of an experiment, with one forward and
backward on one training batch, so that a model that cannot be built, returns the wrong
shape (nodes and steps swapped included), has no parameters or produces a non-finite loss is
refused in a second with one line naming the user's line where it failed (exit 2), not found
broken in run 37; and a model whose tensors ``.to(device)`` would leave behind is warned
about.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from bench.config import to_dict
from bench.profile import Profile
from schedules import NamedSchedule
from stforecast.engine import TrainConfig, Trainer, seed_everything
from stforecast.models import DataSpec, ModelError, count_parameters, resolve_model
from stforecast.models.sources import located
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
    """The profile's model for ``data``: built on the CPU, then moved to the data's device
    (RNGs seeded by the caller)."""
    entry = resolve_model(profile.model.name)
    return entry.build(data_spec(data), profile.model.options).to(data.device)


def build_run(profile: Profile, item: NamedSchedule, seed: int, epochs: int,
              data: WindowedData, model: nn.Module | None = None) -> Trainer:
    """A fresh trainer for one run: every schedule of a seed starts from the same weights.

    ``model``, when given, is the one ``make_model`` built right after seeding (the dry step
    builds it first to check it on its own)."""
    seed_everything(seed)
    model = make_model(profile, data) if model is None else model
    optimizer = item.spec.make_optimizer(model.parameters())
    scheduler = item.spec.build(optimizer, epochs, steps_per_epoch(profile, data))
    return Trainer(model, optimizer, scheduler, data, step_unit=item.spec.step_unit,
                   needs_metric=item.spec.needs_metric, seed=seed, config=train_config(profile))


@dataclass(frozen=True)
class DryRun:
    """What the dry step learned about the model: its size, and one-line warnings about
    what it could not prove (tensors ``.to`` would leave behind, nodes and steps that cannot
    be told apart)."""

    parameters: int
    warnings: tuple[str, ...] = ()


def dry_step(profile: Profile, item: NamedSchedule, data: WindowedData) -> DryRun:
    """Build the first run of the grid and push one training batch forward and backward.

    Raises ``ModelError`` naming the model and what was expected against what was found;
    an exception raised by the model names the user's line it happened at. The model's
    constructor runs once (twice when the node count equals a window length: a second
    model, built for another node count, proves that axis 2 is the node axis). The global
    RNGs are left as they were, so nothing downstream depends on this check.
    """
    name = profile.model.name

    def fail(what: str, original: BaseException | None = None) -> ModelError:
        return ModelError(f"model '{name}': {what}", original=original)

    spec = data_spec(data)
    numpy_state = np.random.get_state()
    try:
        return _dry_step(profile, item, data, spec, fail)
    finally:
        np.random.set_state(numpy_state)


def _dry_step(profile, item, data, spec, fail) -> DryRun:
    warnings: list[str] = []
    with torch.random.fork_rng(devices=[]):
        seed_everything(profile.seeds[0])
        try:
            model = make_model(profile, data)
        except ModelError:
            raise
        except Exception as exc:
            raise fail(f"building it for {spec.num_nodes} nodes, {spec.input_len} → "
                       f"{spec.output_len} steps failed: {_one_line(exc)}", exc) from None
        parameters = count_parameters(model)
        if parameters == 0:
            raise fail("has no trainable parameters (expected at least one tensor with "
                       "requires_grad=True)")
        trainer = build_run(profile, item, profile.seeds[0], max(profile.budgets), data,
                            model=model)
        x, y = data.batch(data.starts["train"][:profile.train.batch_size])
        expected = [x.shape[0], spec.output_len, spec.num_nodes, 1]
        trainer.train_mode()
        try:
            with trainer.autocast():
                pred = model(x)
        except Exception as exc:
            raise fail(f"forward on x {list(x.shape)} [B, T_in, N, F] failed: "
                       f"{_one_line(exc)}", exc) from None
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
            raise fail(f"backward failed: {_one_line(exc)}", exc) from None
        if not any(p.grad is not None for p in model.parameters() if p.requires_grad):
            raise fail("no parameter received a gradient from the loss (is the output "
                       "detached from the parameters?)")
        probe = node_axis_probe(profile, spec, x, fail)
        if probe:
            warnings.append(probe)
        stranded = stranded_tensors(model)
        if stranded:
            warnings.append(stranded_warning(profile.model.name, stranded))
    return DryRun(parameters, tuple(warnings))


def node_axis_probe(profile: Profile, spec: DataSpec, x: torch.Tensor, fail) -> str | None:
    """When the node count equals T_in or T_out, an output ``[B, N, T, 1]`` (nodes and steps
    swapped) has the expected shape. Then the model is built once more, for a node count
    that equals neither, and run on the batch with nodes repeated to that count: its output
    must be ``[B, T_out, N', 1]``. A wrong shape there is an error; a model that cannot be
    built or run for another node count gets a warning that the axes could not be told
    apart."""
    n = spec.num_nodes
    lengths = {spec.input_len, spec.output_len}
    if n not in lengths:
        return None
    m = n + 1
    while m in lengths:
        m += 1
    index = torch.arange(m) % n  # each extra node repeats a real one, graph links included
    adjacency = None
    if spec.adjacency is not None:
        adj = np.asarray(spec.adjacency)
        adjacency = adj[np.ix_(index.numpy(), index.numpy())]
    probe_spec = replace(spec, num_nodes=m, adjacency=adjacency)
    same = "T_in and T_out" if spec.input_len == spec.output_len == n else \
        ("T_out" if spec.output_len == n else "T_in")
    name = profile.model.name
    try:
        model = resolve_model(name).build(probe_spec, profile.model.options)
        model.eval()
        with torch.no_grad():
            pred = model(x[:, :, index])
    except Exception as exc:
        return (f"warning: model '{name}': the data's {n} nodes equal its {same} "
                f"({n} steps), so the output check cannot tell nodes from steps, and the "
                f"model could not be run for {m} nodes to tell them apart ({_one_line(exc)}); "
                "make sure forward returns [B, T_out, N, 1], not [B, N, T_out, 1]")
    want = [x.shape[0], spec.output_len, m, 1]
    found = list(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
    if found != want:
        swapped = found == [x.shape[0], m, spec.output_len, 1]
        raise fail(f"output shape for {m} nodes: expected {want} [B, T_out, N, 1], found "
                   f"{found}" + (": nodes and steps are swapped" if swapped else "")
                   + f" (the data's {n} nodes equal its {same}, so the model was also run "
                   f"for {m} nodes to tell them apart)")
    return None


# nn.Module's own bookkeeping: what it moves itself.
_MODULE_SLOTS = frozenset({"_parameters", "_buffers", "_modules"})


def _held(value, path: str, depth: int = 0):
    """(path, tensor) of the tensors inside a plain attribute, lists and dicts included."""
    if isinstance(value, torch.Tensor):
        yield path, value
    elif depth < 3 and isinstance(value, (list, tuple)):
        for i, v in enumerate(value[:256]):
            yield from _held(v, f"{path}[{i}]", depth + 1)
    elif depth < 3 and isinstance(value, dict):
        for i, (k, v) in enumerate(value.items()):
            if i >= 256:
                break
            yield from _held(v, f"{path}[{k!r}]", depth + 1)


def _plain_tensors(model: nn.Module) -> dict[str, tuple[torch.Tensor, bool]]:
    """Tensors held in plain attributes (not parameters or buffers), by attribute path, with
    whether their module moves its own tensors (an ``_apply`` of its own)."""
    out = {}
    for prefix, module in model.named_modules():
        moves_itself = type(module)._apply is not nn.Module._apply
        for attr, value in vars(module).items():
            if attr in _MODULE_SLOTS:
                continue
            for path, tensor in _held(value, f"{prefix + '.' if prefix else ''}{attr}"):
                out[path] = (tensor, moves_itself)
    return out


def stranded_tensors(model: nn.Module) -> list[str]:
    """Attribute paths of tensors that ``.to()`` leaves where they are.

    The model is moved to float64 on the CPU (it is changed: call this last); a floating
    tensor held outside parameters and buffers that is still not float64 afterwards would
    equally stay on the CPU when the model is moved to a GPU. An integer tensor cannot be
    tested that way and is reported when it sits in a plain attribute of a module that does
    not move its own tensors."""
    before = _plain_tensors(model)
    if not before:
        return []
    model.to(torch.float64)
    after = _plain_tensors(model)
    out = []
    for path, (tensor, moves_itself) in after.items():
        if tensor.is_floating_point():
            if tensor.dtype != torch.float64:
                out.append(path)
        elif path in before and not moves_itself and tensor.numel() > 1:
            out.append(path)
    return out


def stranded_warning(name: str, paths: list[str]) -> str:
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return (f"warning: model '{name}': {shown} did not move with .to() (a tensor in a plain "
            "attribute or list, not a parameter or buffer); on a GPU it would stay on the "
            "CPU. Register it with self.register_buffer(name, tensor), one buffer per tensor "
            "of a list")


def _one_line(exc: BaseException) -> str:
    """``Type: message at file.py:12: the line``: the innermost frame in the user's files."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}{located(exc)}"

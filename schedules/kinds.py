"""Schedule kinds: frozen specs that build genuine ``torch.optim.lr_scheduler`` objects.

A kind carries its optimizer settings (``lr``, ``weight_decay``, ``optimizer`` and that
optimizer's own options) and its own hyperparameters, and says three things the runner and
engine need:

- ``step_unit``: ``"epoch"`` or ``"step"``, when the engine calls ``scheduler.step()``;
- ``needs_metric``: whether ``step`` takes the validation loss (``ReduceLROnPlateau``);
- ``budget_dependent``: whether the lr path depends on the number of epochs. A schedule whose
  path does not (Plateau, fixed milestones, constant) can be trained once to the longest
  budget and its shorter budgets read off that run's prefix.

The budget is always passed in explicitly: ``build(optimizer, epochs, steps_per_epoch)``.
Units are in the names (``warmup_epochs``, ``milestones`` in epochs, fractions of the budget
as ``*_fraction``). Built-ins are composed (``LinearLR`` then ``CosineAnnealingLR`` through
``SequentialLR``) rather than re-implemented.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch.optim import lr_scheduler as lrs

OPTIMIZERS = ("adam", "adamw", "schedulefree_adamw", "sgd")
ADAM_BETAS = (0.9, 0.999)  # torch's and schedulefree's default, so the default spec is theirs
_WITH_BETAS = ("adam", "adamw", "schedulefree_adamw")
_NAMES = {"adam": "Adam", "adamw": "AdamW", "schedulefree_adamw": "schedule-free AdamW",
          "sgd": "SGD"}
# Older torch has no fused SGD; there the multi-tensor default is the fastest there is.
_SGD_FUSED = "fused" in inspect.signature(torch.optim.SGD).parameters


class ScheduleError(ValueError):
    """A schedule spec is invalid or cannot be built; the message names the field."""


@dataclass(frozen=True)
class Schedule:
    """Base of every kind: optimizer settings shared by all.

    ``betas`` belong to the Adam family and ``momentum``/``nesterov`` to SGD; setting one for
    the other optimizer is an error rather than silently ignored, so a spec says only what
    its run does.
    """

    lr: float
    weight_decay: float = 0.0
    optimizer: str = "adam"
    betas: tuple[float, float] = ADAM_BETAS
    momentum: float = 0.0
    nesterov: bool = False

    kind: ClassVar[str] = ""
    step_unit: ClassVar[str] = "epoch"
    needs_metric: ClassVar[bool] = False
    budget_dependent: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not (0 < self.lr <= 10):
            raise ScheduleError(f"lr must be in (0, 10], got {self.lr}")
        if not (0 <= self.weight_decay < 1):
            raise ScheduleError(f"weight_decay must be in [0, 1), got {self.weight_decay}")
        if self.optimizer not in OPTIMIZERS:
            raise ScheduleError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                                f"got {self.optimizer!r}")
        self._check_optimizer_options()

    def _check_optimizer_options(self) -> None:
        betas = self.betas
        if (not isinstance(betas, (list, tuple)) or len(betas) != 2
                or not all(_is_number(b) and 0 <= b < 1 for b in betas)):
            shown = list(betas) if isinstance(betas, (list, tuple)) else betas
            raise ScheduleError(f"betas must be two numbers in [0, 1), got {shown!r}")
        # A list (from code or YAML) would make the frozen spec unhashable.
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        if not (_is_number(self.momentum) and 0 <= self.momentum < 1):
            raise ScheduleError(f"momentum must be in [0, 1), got {self.momentum!r}")
        # An int 0 from code would otherwise record (and hash) differently from YAML's 0.0.
        object.__setattr__(self, "momentum", float(self.momentum))
        if not isinstance(self.nesterov, bool):
            raise ScheduleError(f"nesterov must be true or false, got {self.nesterov!r}")
        if self.optimizer == "sgd":
            if self.betas != ADAM_BETAS:
                raise ScheduleError(f"betas applies to optimizer {', '.join(_WITH_BETAS)} "
                                    f"only, got optimizer 'sgd'")
            if self.nesterov and self.momentum == 0:
                # torch.optim.SGD's own rule; raised here so a spec file fails at load time.
                raise ScheduleError("nesterov needs momentum > 0 (optimizer 'sgd'), got "
                                    "momentum 0")
        else:
            for name, default in (("momentum", 0.0), ("nesterov", False)):
                if getattr(self, name) != default:
                    raise ScheduleError(f"{name} applies to optimizer 'sgd' only, got "
                                        f"optimizer {self.optimizer!r}")

    # -- what subclasses provide --------------------------------------------------------
    def _build(self, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int):
        raise NotImplementedError

    def check_budget(self, epochs: int) -> None:
        """Raise ``ScheduleError`` when the spec cannot run for ``epochs`` epochs."""

    def hyperparameters(self) -> str:
        """Short text of the settings, for tables and ``bench list``.

        Default optimizer options add nothing, so the text of existing specs stays the same.
        """
        parts = [f"lr={self.lr:g}"]
        if self.weight_decay:
            parts.append(f"wd={self.weight_decay:g}")
        if self.optimizer != "adam":
            parts.append(self.optimizer)
        if self.betas != ADAM_BETAS:
            parts.append(f"betas=({self.betas[0]:g}, {self.betas[1]:g})")
        if self.momentum:
            parts.append(f"momentum={self.momentum:g}")
        if self.nesterov:
            parts.append("nesterov")
        return ", ".join(parts)

    def optimizer_text(self) -> str:
        """The optimizer in words, for a report's settings table.

        Whether weight decay is coupled (L2 in the gradient) or decoupled is spelled out for
        the Adam family, where it changes what a given ``weight_decay`` means.
        """
        first = self._momentum_text() if self.optimizer == "sgd" else self._betas_text()
        wd = _short(self.weight_decay)
        if not self.weight_decay:
            decay = "no wd"
        elif self.optimizer == "adam":
            decay = f"coupled wd {wd}"
        elif self.optimizer == "sgd":
            decay = f"wd {wd}"
        else:
            decay = f"decoupled wd {wd}"
        return f"{_NAMES[self.optimizer]} ({first}, {decay})"

    def _betas_text(self) -> str:
        return f"β={self.betas[0]:g}/{self.betas[1]:g}"

    def _momentum_text(self) -> str:
        if not self.momentum:
            return "no momentum"
        return f"momentum {self.momentum:g}" + (", Nesterov" if self.nesterov else "")

    # -- shared -------------------------------------------------------------------------
    def make_optimizer(self, params) -> torch.optim.Optimizer:
        """The optimizer this spec was tuned with (Adam's and SGD's weight decay is coupled L2).

        Every option is passed explicitly, so the default spec builds exactly the ``Adam`` it
        always has and earlier results reproduce bit for bit. Only the implementation is
        chosen by device: on CUDA the single-kernel one (the same update rule, fewer
        launches); on the CPU the multi-tensor (``foreach``) one, which runs the same tensor
        operations in the same order as torch's per-parameter default, so its numbers are
        identical (tested) in about half the optimizer time of a small model.
        """
        params = list(params)
        on_cuda = bool(params) and all(p.is_cuda for p in params)
        impl = {"fused": True} if on_cuda else {"foreach": True}
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, betas=self.betas,
                                    weight_decay=self.weight_decay, **impl)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, betas=self.betas,
                                     weight_decay=self.weight_decay, **impl)
        if self.optimizer == "sgd":
            extra = impl if _SGD_FUSED or not on_cuda else {}
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                                   nesterov=self.nesterov, weight_decay=self.weight_decay,
                                   **extra)
        import schedulefree

        # Warmup comes from the genuine scheduler below, not the optimizer's own counter;
        # both scale group["lr"] the same way, so the averaging weights are unchanged.
        return schedulefree.AdamWScheduleFree(params, lr=self.lr, betas=self.betas,
                                              weight_decay=self.weight_decay, warmup_steps=0)

    def build(self, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int):
        """A genuine torch scheduler for this budget."""
        if epochs < 1 or steps_per_epoch < 1:
            raise ScheduleError(f"budget must be >= 1 epoch of >= 1 step, got {epochs} x "
                                f"{steps_per_epoch}")
        self.check_budget(epochs)
        return self._build(optimizer, epochs, steps_per_epoch)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


def _check_warmup(spec) -> None:
    """The warmup fields shared by the kinds that ramp up linearly."""
    _non_negative_int("warmup_epochs", spec.warmup_epochs)
    if not (0 < spec.warmup_start_factor <= 1):
        raise ScheduleError(f"warmup_start_factor must be in (0, 1], got "
                            f"{spec.warmup_start_factor}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(x: float) -> str:
    """``5e-4`` rather than ``0.0005``: how weight decays are written in papers and notes."""
    if x and abs(x) < 1e-2:
        mantissa, exponent = f"{x:.12e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{x:g}"


def _non_negative_int(name: str, value: int) -> None:
    if int(value) != value or value < 0:
        raise ScheduleError(f"{name} must be a non-negative integer, got {value}")


@dataclass(frozen=True)
class Constant(Schedule):
    """The control: the base lr throughout."""

    kind: ClassVar[str] = "constant"

    def _build(self, optimizer, epochs, steps_per_epoch):
        return lrs.ConstantLR(optimizer, factor=1.0, total_iters=0)


@dataclass(frozen=True)
class Plateau(Schedule):
    """``ReduceLROnPlateau`` on the validation loss, once per epoch."""

    factor: float = 0.5
    patience: int = 5
    threshold: float = 1e-4   # relative improvement that counts (torch's default)
    cooldown: int = 0
    min_lr: float = 0.0

    kind: ClassVar[str] = "plateau"
    needs_metric: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 < self.factor < 1):
            raise ScheduleError(f"factor must be in (0, 1), got {self.factor}")
        _non_negative_int("patience", self.patience)
        _non_negative_int("cooldown", self.cooldown)
        if self.min_lr < 0 or self.threshold < 0:
            raise ScheduleError("min_lr and threshold must be >= 0")

    def _build(self, optimizer, epochs, steps_per_epoch):
        return lrs.ReduceLROnPlateau(optimizer, mode="min", factor=self.factor,
                                     patience=self.patience, threshold=self.threshold,
                                     cooldown=self.cooldown, min_lr=self.min_lr)

    def hyperparameters(self) -> str:
        return f"{super().hyperparameters()}, factor={self.factor:g}, patience={self.patience}"


@dataclass(frozen=True)
class MultiStep(Schedule):
    """``MultiStepLR``: multiply the lr by ``gamma`` at each epoch in ``milestones``."""

    milestones: tuple[int, ...] = (30, 60, 90)
    gamma: float = 0.1

    kind: ClassVar[str] = "multistep"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "milestones", tuple(self.milestones))
        if not self.milestones:
            raise ScheduleError("milestones must list at least one epoch")
        for m in self.milestones:
            if int(m) != m or m < 1:
                raise ScheduleError(f"milestones must be positive integers, got {m}")
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:])):
            raise ScheduleError(f"milestones must be strictly increasing, got "
                                f"{list(self.milestones)}")
        if not (0 < self.gamma <= 1):
            raise ScheduleError(f"gamma must be in (0, 1], got {self.gamma}")

    def _build(self, optimizer, epochs, steps_per_epoch):
        return lrs.MultiStepLR(optimizer, milestones=list(self.milestones), gamma=self.gamma)

    def hyperparameters(self) -> str:
        return (f"{super().hyperparameters()}, milestones={list(self.milestones)}, "
                f"gamma={self.gamma:g}")


@dataclass(frozen=True)
class MultiStepScaled(Schedule):
    """``MultiStepLR`` with milestones at fractions of the run's own budget."""

    milestone_fractions: tuple[float, ...] = (0.3, 0.6, 0.9)
    gamma: float = 0.1

    kind: ClassVar[str] = "multistep_scaled"
    budget_dependent: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "milestone_fractions", tuple(self.milestone_fractions))
        f = self.milestone_fractions
        if not f or any(not (0 < x < 1) for x in f) or any(b <= a for a, b in zip(f, f[1:])):
            raise ScheduleError(f"milestone_fractions must be increasing values in (0, 1), "
                                f"got {list(f)}")
        if not (0 < self.gamma <= 1):
            raise ScheduleError(f"gamma must be in (0, 1], got {self.gamma}")

    def milestones(self, epochs: int) -> list[int]:
        return [max(1, round(x * epochs)) for x in self.milestone_fractions]

    def check_budget(self, epochs: int) -> None:
        ms = self.milestones(epochs)
        if len(set(ms)) != len(ms):
            raise ScheduleError(f"milestone_fractions collide at {epochs} epochs ({ms})")

    def _build(self, optimizer, epochs, steps_per_epoch):
        return lrs.MultiStepLR(optimizer, milestones=self.milestones(epochs), gamma=self.gamma)

    def hyperparameters(self) -> str:
        pct = "/".join(f"{100 * x:g}" for x in self.milestone_fractions)
        return f"{super().hyperparameters()}, milestones at {pct} % of budget, gamma={self.gamma:g}"


@dataclass(frozen=True)
class WarmupCosine(Schedule):
    """Linear warmup from ``warmup_start_factor`` x lr, then cosine decay to ``min_lr``.

    Stepped per optimizer step. The cosine spans the rest of the run so that the last
    optimizer step of the budget uses exactly ``min_lr``.
    """

    warmup_epochs: int = 5
    warmup_start_factor: float = 0.01
    min_lr: float = 1e-5

    kind: ClassVar[str] = "warmup_cosine"
    step_unit: ClassVar[str] = "step"
    budget_dependent: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_warmup(self)
        if not (0 <= self.min_lr < self.lr):
            raise ScheduleError(f"min_lr must be in [0, lr), got {self.min_lr}")

    def check_budget(self, epochs: int) -> None:
        if self.warmup_epochs >= epochs:
            raise ScheduleError(f"warmup_epochs={self.warmup_epochs} leaves no decay in a "
                                f"{epochs}-epoch budget")

    def _build(self, optimizer, epochs, steps_per_epoch):
        warm = self.warmup_epochs * steps_per_epoch
        total = epochs * steps_per_epoch
        if total - 1 - warm < 1:
            raise ScheduleError(f"a {epochs}-epoch budget of {steps_per_epoch} steps leaves no "
                                f"cosine phase after {warm} warmup steps")
        cosine = lrs.CosineAnnealingLR(optimizer, T_max=total - 1 - warm, eta_min=self.min_lr)
        if warm == 0:
            return cosine
        warmup = lrs.LinearLR(optimizer, start_factor=self.warmup_start_factor,
                              end_factor=1.0, total_iters=warm)
        return lrs.SequentialLR(optimizer, [warmup, cosine], milestones=[warm])

    def hyperparameters(self) -> str:
        return (f"{super().hyperparameters()}, warmup {self.warmup_epochs} ep from "
                f"x{self.warmup_start_factor:g}, cosine to {self.min_lr:g}")


@dataclass(frozen=True)
class OneCycle(Schedule):
    """``OneCycleLR`` (Smith 2018): up to ``lr`` over ``pct_start`` of steps, then annealed.

    Adam's beta1 (SGD's momentum) is cycled between 0.85 and 0.95 inversely to the lr, as
    torch does by default. A beta1 or momentum set in the spec would be overwritten by that
    cycle, so setting one is an error rather than a setting the run silently ignores.
    """

    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal_strategy: str = "cos"

    kind: ClassVar[str] = "onecycle"
    step_unit: ClassVar[str] = "step"
    budget_dependent: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 < self.pct_start < 1):
            raise ScheduleError(f"pct_start must be in (0, 1), got {self.pct_start}")
        if self.div_factor <= 0 or self.final_div_factor <= 0:
            raise ScheduleError("div_factor and final_div_factor must be positive")
        if self.anneal_strategy not in ("cos", "linear"):
            raise ScheduleError(f"anneal_strategy must be 'cos' or 'linear', got "
                                f"{self.anneal_strategy!r}")
        if self.betas[0] != ADAM_BETAS[0]:
            raise ScheduleError(f"betas[0] has no effect with onecycle, which cycles it between "
                                f"0.85 and 0.95; leave it at {ADAM_BETAS[0]:g}, got "
                                f"{self.betas[0]:g}")
        if self.momentum:
            raise ScheduleError(f"momentum has no effect with onecycle, which cycles it between "
                                f"0.85 and 0.95; leave it at 0, got {self.momentum:g}")

    def _betas_text(self) -> str:
        return f"β1 cycled 0.85-0.95, β2={self.betas[1]:g}"

    def _momentum_text(self) -> str:
        return "momentum cycled 0.85-0.95"

    def _build(self, optimizer, epochs, steps_per_epoch):
        return lrs.OneCycleLR(optimizer, max_lr=self.lr, epochs=epochs,
                              steps_per_epoch=steps_per_epoch, pct_start=self.pct_start,
                              div_factor=self.div_factor, final_div_factor=self.final_div_factor,
                              anneal_strategy=self.anneal_strategy)

    def hyperparameters(self) -> str:
        return (f"max {super().hyperparameters()}, peak at {100 * self.pct_start:g} %, "
                f"start lr/{self.div_factor:g}, end lr/{self.div_factor * self.final_div_factor:g}")


@dataclass(frozen=True)
class WarmupStableDecay(Schedule):
    """Warmup-stable-decay: linear warmup, constant lr, linear decay over the last fraction.

    With ``warmup_epochs=0`` and ``decay_fraction=1`` it is plain linear decay to ``min_lr``.
    The decay ends so that the budget's last optimizer step uses exactly ``min_lr``.
    """

    warmup_epochs: int = 5
    warmup_start_factor: float = 0.01
    decay_fraction: float = 0.2
    min_lr: float = 0.0

    kind: ClassVar[str] = "wsd"
    step_unit: ClassVar[str] = "step"
    budget_dependent: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_warmup(self)
        if not (0 < self.decay_fraction <= 1):
            raise ScheduleError(f"decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if not (0 <= self.min_lr < self.lr):
            raise ScheduleError(f"min_lr must be in [0, lr), got {self.min_lr}")

    def phases(self, epochs: int, steps_per_epoch: int) -> tuple[int, int, int]:
        """Steps of warmup, stable and decay; the decay phase includes the last step."""
        total = epochs * steps_per_epoch
        warm = self.warmup_epochs * steps_per_epoch
        decay = max(1, math.ceil(self.decay_fraction * total))
        return warm, total - warm - decay, decay

    def check_budget(self, epochs: int) -> None:
        warm = self.warmup_epochs
        if warm + self.decay_fraction * epochs > epochs:
            raise ScheduleError(f"warmup_epochs={warm} plus decay_fraction="
                                f"{self.decay_fraction} exceed a {epochs}-epoch budget")

    def _build(self, optimizer, epochs, steps_per_epoch):
        warm, stable, decay = self.phases(epochs, steps_per_epoch)
        end = self.min_lr / self.lr
        # LinearLR reaches end_factor after total_iters steps; decay - 1 puts it on the last.
        decay_part = lrs.LinearLR(optimizer, start_factor=1.0, end_factor=end,
                                  total_iters=max(decay - 1, 1))
        parts, milestones = [], []
        if warm:
            parts.append(lrs.LinearLR(optimizer, start_factor=self.warmup_start_factor,
                                      end_factor=1.0, total_iters=warm))
            milestones.append(warm)
        if stable:
            parts.append(lrs.ConstantLR(optimizer, factor=1.0, total_iters=0))
            milestones.append(warm + stable)
        parts.append(decay_part)
        if len(parts) == 1:
            return decay_part
        return lrs.SequentialLR(optimizer, parts, milestones=milestones)

    def hyperparameters(self) -> str:
        warm = (f"warmup {self.warmup_epochs} ep, " if self.warmup_epochs else "")
        return (f"{super().hyperparameters()}, {warm}linear decay over last "
                f"{100 * self.decay_fraction:g} % to {self.min_lr:g}")


@dataclass(frozen=True)
class ScheduleFree(Schedule):
    """Schedule-free AdamW (Defazio et al. 2024): no decay, only a linear warmup.

    The optimizer averages its iterates itself; the engine switches it to its averaged
    weights for evaluation (``optimizer.eval()``) and back for training.
    """

    warmup_epochs: int = 5
    warmup_start_factor: float = 0.01
    optimizer: str = "schedulefree_adamw"

    kind: ClassVar[str] = "schedulefree"
    step_unit: ClassVar[str] = "step"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.optimizer != "schedulefree_adamw":
            raise ScheduleError("the schedulefree kind runs only with optimizer "
                                "'schedulefree_adamw'")
        _check_warmup(self)

    def _build(self, optimizer, epochs, steps_per_epoch):
        warm = self.warmup_epochs * steps_per_epoch
        if warm == 0:
            return lrs.ConstantLR(optimizer, factor=1.0, total_iters=0)
        # LinearLR holds end_factor after total_iters: warmup then constant, one object.
        return lrs.LinearLR(optimizer, start_factor=self.warmup_start_factor, end_factor=1.0,
                            total_iters=warm)

    def hyperparameters(self) -> str:
        return f"{super().hyperparameters()}, warmup {self.warmup_epochs} ep, iterate averaging"


KINDS: dict[str, type[Schedule]] = {
    cls.kind: cls
    for cls in (Constant, Plateau, MultiStep, MultiStepScaled, WarmupCosine, OneCycle,
                WarmupStableDecay, ScheduleFree)
}

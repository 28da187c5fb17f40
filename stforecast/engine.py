"""One training engine: a plain loop over epochs and batches.

The engine is handed a model, an optimizer and a scheduler object and is told two facts about
the scheduler: whether it steps once per optimizer step or once per epoch, and whether its
``step`` takes the validation loss (``ReduceLROnPlateau``). It knows no schedule by name.

Per epoch: shuffled training batches from the run's seed, each a ``train_step`` (masked MAE
loss on the original scale, backward, ``apply_gradients``: clipping, optimizer step, a
per-step schedule step), then validation and test evaluation under ``torch.inference_mode``
and ``close_epoch`` (divergence check, epoch-level schedule step, one ``EpochRecord``). The
fused path (``stforecast.fused``) reuses ``apply_gradients`` and ``close_epoch`` per member;
``advance_schedule`` is the only code that steps the scheduler.

A run is reproducible on CPU: the shuffling generator and the global RNG (dropout) are part of
``state_dict()``, so a run restored from a state continues exactly as if never stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from stforecast.compilation import compile_model
from stforecast.metrics import HorizonMetrics, masked_mae
from stforecast.windows import WindowedData

StepUnit = Literal["epoch", "step"]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the loop itself; the optimizer and schedule come from outside."""

    batch_size: int = 64
    eval_batch_size: int = 256
    grad_clip: float | None = 5.0       # max global gradient norm; None turns clipping off
    divergence_factor: float = 100.0    # a train loss above this x the target's std is divergence
    autocast: str | None = None         # None (float32) or "bf16": bfloat16 autocast
    compile: bool = False               # torch.compile the model (stforecast.compilation)
    tf32: bool = False                  # TF32 for float32 matmuls and convolutions on CUDA
    flush_denormal: bool = False        # denormal floats flushed to zero (set_flush_denormal)


class Diverged(RuntimeError):
    """The loss became non-finite or exploded; carries the epoch it happened in."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(f"training diverged at epoch {epoch} (train loss {loss})")
        self.epoch, self.loss = epoch, loss


@dataclass
class EpochRecord:
    """What one epoch leaves behind.

    ``lr`` is the rate in effect at the epoch's first optimizer step, ``lr_end`` at its last;
    they differ only for schedules stepped per optimizer step.
    """

    epoch: int
    lr: float
    lr_end: float
    train_loss: float
    val: dict[str, float]
    test: dict[str, float]
    seconds: float
    train_seconds: float
    eval_seconds: float

    def row(self) -> dict[str, Any]:
        """Flat form: ``val_mae``, ``test_mae_h3``, ..."""
        out = {"epoch": self.epoch, "lr": self.lr, "lr_end": self.lr_end,
               "train_loss": self.train_loss}
        out.update({f"val_{k}": v for k, v in self.val.items()})
        out.update({f"test_{k}": v for k, v in self.test.items()})
        out.update(seconds=self.seconds, train_seconds=self.train_seconds,
                   eval_seconds=self.eval_seconds)
        return out


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available")
    return dev


def seed_everything(seed: int) -> None:
    """Seed the global RNGs that model initialisation and dropout draw from."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def set_tf32(enabled: bool) -> None:
    """TF32 (a 10-bit mantissa) for float32 matrix products and convolutions on CUDA, or
    IEEE float32 for both.

    Set for every run, both ways, because torch's defaults differ by library: cuBLAS
    matmuls are IEEE but cuDNN convolutions and RNNs are TF32, so a plugged-in model with a
    ``Conv2d`` would otherwise train in TF32 under a profile that says float32. The flags are
    process-wide; every run of a process shares its profile's setting. No effect on the CPU.
    """
    if not hasattr(torch.backends.cudnn, "conv"):  # torch before the per-library API
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
        return
    mode = "tf32" if enabled else "ieee"
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode
    torch.backends.cudnn.rnn.fp32_precision = mode


def set_flush_denormal(enabled: bool) -> None:
    """Flush denormal floats (below 1.2e-38 in float32) to zero on the CPU, or keep them.

    Why it matters: under weight decay the weights of units that stopped learning (a ReLU that
    never fires) shrink towards zero and become denormal, and every matrix product that
    touches a denormal runs on the CPU's slow path. On SZ-taxi at lr 3e-2 a run's epochs grew
    from 0.9 s to 18 s that way; its own state evaluated 10x faster with denormals flushed.
    Flushing changes only values that small, and a result only where such a value occurs, so
    it is a setting of the experiment (``train.flush_denormal``), off unless a profile turns
    it on. Set for every run, both ways, like ``set_tf32``. It applies to the calling thread,
    which is where all the arithmetic of a one-thread run happens.
    """
    torch.set_flush_denormal(enabled)


def step_scheduler(scheduler: Any, step_unit: StepUnit, needs_metric: bool, unit: StepUnit,
                   val_loss: float | None = None) -> None:
    """The rule for stepping a schedule, called at the end of every optimizer step
    (``unit="step"``) and of every epoch (``unit="epoch"``, with the validation MAE): a
    schedule steps at its own unit only, a metric-driven one with the metric. The trainer
    and the trunk planner's shadows (``bench.trunks``) both step by it, so a planned lr path
    is the path a run takes."""
    if unit != step_unit:
        return
    if needs_metric:
        if val_loss is None:
            raise ValueError("a metric-driven schedule must step per epoch")
        scheduler.step(val_loss)
    else:
        scheduler.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


class Trainer:
    """Holds everything that changes during a run, so that it can be saved and restored."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 data: WindowedData, *, step_unit: StepUnit, needs_metric: bool, seed: int,
                 config: TrainConfig | None = None) -> None:
        if step_unit not in ("epoch", "step"):
            raise ValueError(f"step_unit must be 'epoch' or 'step', got {step_unit!r}")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.data = data
        self.step_unit, self.needs_metric = step_unit, needs_metric
        self.config = config or TrainConfig()
        self.device = data.device
        self.epoch = 0  # the next epoch to run
        self.records: list[EpochRecord] = []
        self.generator = torch.Generator().manual_seed(seed)  # CPU: same order on any device
        # Schedule-free optimizers keep two weight sequences and must be told which to use.
        self.optimizer_modes = callable(getattr(optimizer, "eval", None))
        self.loss_bound = self.config.divergence_factor * data.scaler.std
        self._autocast_dtype = {None: None, "bf16": torch.bfloat16}[self.config.autocast]
        set_tf32(self.config.tf32)
        set_flush_denormal(self.config.flush_denormal)
        if self.config.compile:
            compile_model(model, self.device)

    # -- the loop -----------------------------------------------------------------------
    def run_epoch(self) -> EpochRecord:
        """Train one epoch, evaluate, close the epoch (see ``close_epoch``)."""
        sync(self.device)
        t0 = time.perf_counter()
        lr = lr_end = current_lr(self.optimizer)
        self.train_mode()
        loss_sum = torch.zeros((), device=self.device)
        steps = 0
        for x, y in self.data.batches("train", self.config.batch_size, self.generator):
            lr_end = current_lr(self.optimizer)  # the rate this step uses
            loss_sum += self.train_step(x, y)
            steps += 1
        train_loss = float(loss_sum) / max(steps, 1)  # the one host sync of the epoch
        sync(self.device)
        t1 = time.perf_counter()
        val = self.evaluate("val")
        test = self.evaluate("test")
        sync(self.device)
        t2 = time.perf_counter()
        return self.close_epoch(lr, lr_end, train_loss, val, test, (t2 - t0, t1 - t0, t2 - t1))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch; returns the (detached) training loss."""
        loss = self.forward_loss(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.apply_gradients()
        return loss.detach()

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Masked MAE of the model's prediction for ``x`` against ``y``, in original units."""
        with self.autocast():
            pred = self.model(x)
        return self.loss(pred, y)

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of a scaled prediction ``[B, T_out, N, 1]``."""
        return masked_mae(self.data.scaler.inverse(pred.float()), y, self.data.null_value)

    def apply_gradients(self) -> None:
        """Clip, step the optimizer and a per-step schedule: everything after ``backward``
        (the fused path computes gradients its own way and then calls this per member)."""
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.advance_schedule("step")

    def close_epoch(self, lr: float, lr_end: float, train_loss: float, val: dict[str, float],
                    test: dict[str, float], seconds: tuple[float, float, float]) -> EpochRecord:
        """The one place an epoch ends, for single and fused runs alike: the divergence
        check, the epoch-level schedule step and the record.

        ``seconds`` is (total, training, evaluation). Raises ``Diverged`` when the training
        loss is non-finite or above the bound, or the validation MAE is non-finite.
        """
        if not math.isfinite(train_loss) or train_loss > self.loss_bound:
            raise Diverged(self.epoch, train_loss)
        if not math.isfinite(val["mae"]):
            raise Diverged(self.epoch, val["mae"])
        self.advance_schedule("epoch", val["mae"])
        total, train_s, eval_s = seconds
        record = EpochRecord(self.epoch, lr, lr_end, train_loss, val, test, seconds=total,
                             train_seconds=train_s, eval_seconds=eval_s)
        self.records.append(record)
        self.epoch += 1
        return record

    def train_mode(self) -> None:
        self.model.train()
        if self.optimizer_modes:
            self.optimizer.train()

    def eval_mode(self) -> None:
        self.model.eval()
        if self.optimizer_modes:
            self.optimizer.eval()

    def advance_schedule(self, unit: StepUnit, val_loss: float | None = None) -> None:
        """The single place the scheduler is stepped (by ``step_scheduler``)."""
        step_scheduler(self.scheduler, self.step_unit, self.needs_metric, unit, val_loss)

    def evaluate(self, split: str) -> dict[str, float]:
        """Masked metrics over all windows of a split, overall and per horizon."""
        self.eval_mode()
        acc = HorizonMetrics(self.data.split.output_len, self.data.null_value, self.device)
        with torch.inference_mode():
            for x, y in self.data.batches(split, self.config.eval_batch_size):
                with self.autocast():
                    pred = self.data.scaler.inverse(self.model(x).float())
                acc.update(pred, y)
        return acc.compute()

    def fit(self, epochs: int, on_epoch=None) -> list[EpochRecord]:
        """Run until ``epochs`` epochs are done; ``on_epoch(trainer, record)`` after each."""
        while self.epoch < epochs:
            record = self.run_epoch()
            if on_epoch is not None:
                on_epoch(self, record)
        return self.records

    def autocast(self):
        """The training setting's autocast context (a disabled one for float32)."""
        if self._autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    # -- state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizer, scheduler, RNGs, epoch.

        Only tensors and plain containers of str / int / float / bool / None, so a checkpoint
        loads with ``torch.load(..., weights_only=True)``, which executes no code: the numpy
        RNG state is a tensor plus plain numbers, the records plain dicts of numbers."""
        kind, key, pos, has_gauss, cached = np.random.get_state()
        state = {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": {"kind": str(kind), "key": torch.from_numpy(key.astype(np.int64)),
                          "pos": int(pos), "has_gauss": int(has_gauss),
                          "cached_gaussian": float(cached)},
            "records": [_plain(asdict(r)) for r in self.records],
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``'s output; a malformed state raises ``ValueError``."""
        records = [EpochRecord(**r) for r in state["records"]]
        epoch = int(state["epoch"])
        if epoch != len(records) or [r.epoch for r in records] != list(range(epoch)):
            raise ValueError(f"state of epoch {epoch} holds {len(records)} records")
        numpy_rng = state["numpy_rng"]
        if isinstance(numpy_rng, dict):  # the form state_dict() writes
            numpy_rng = (numpy_rng["kind"],
                         np.asarray(numpy_rng["key"].numpy(), dtype=np.int64).astype(np.uint32),
                         int(numpy_rng["pos"]), int(numpy_rng["has_gauss"]),
                         float(numpy_rng["cached_gaussian"]))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(numpy_rng)
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.epoch = epoch
        self.records = records


def _plain(value: Any) -> Any:
    """Numbers as Python ``int`` / ``float`` (never numpy scalars), recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)

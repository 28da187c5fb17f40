"""From a dataset to model batches: time-ordered split, train-only scaler, windows cut by index.

Tensor layout everywhere in ``stforecast``: ``[batch, time, nodes, features]``.

- model input ``x``: ``[B, input_len, N, 3]``: channel 0 the z-scored target (a missing
  reading becomes 0, the training mean), channel 1 time of day as a fraction of the day in
  [0, 1), channel 2 day of week as 0 (Monday) .. 6 stored as float;
- target ``y``: ``[B, output_len, N, 1]`` in original units, ``null_value`` where missing;
- model output: ``[B, output_len, N, 1]`` in the scaled space; ``Scaler.inverse`` maps it back.

Windows are never materialised: a split keeps the start index of each of its windows and a
batch is gathered from the resident ``[T, N, C]`` series by ``start + arange(len)``. A window
lies wholly inside its split (inputs and targets), so no validation or test value reaches
training through a window that straddles a boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from stforecast.datasets.base import DataError, Dataset, observed

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of the time axis, in time order; test takes the rest."""

    train: float = 0.7
    val: float = 0.1
    input_len: int = 12
    output_len: int = 12

    def bounds(self, num_steps: int) -> dict[str, tuple[int, int]]:
        """``[start, stop)`` step ranges per split; ``int()`` truncation as BasicTS cuts them."""
        n_train = int(num_steps * self.train)
        n_val = int(num_steps * self.val)
        return {
            "train": (0, n_train),
            "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, num_steps),
        }


@dataclass(frozen=True)
class Scaler:
    """z-score with statistics of observed training targets only."""

    mean: float
    std: float

    @classmethod
    def fit(cls, target: np.ndarray, null_value: float) -> Scaler:
        vals = target[observed(target, null_value)]
        std = float(vals.std())
        return cls(mean=float(vals.mean()), std=std if std > 0 else 1.0)

    def transform(self, x):
        return (x - self.mean) / self.std

    def inverse(self, x):
        return x * self.std + self.mean


def time_features(timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time of day as a fraction in [0, 1) and day of week 0 (Monday) .. 6, one per step."""
    ts = np.asarray(timestamps, dtype="datetime64[ns]")
    day = ts.astype("datetime64[D]")
    tod = (ts - day).astype("timedelta64[s]").astype(np.float64) / 86400.0
    dow = (day.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday (3 when Monday is 0)
    return tod.astype(np.float32), dow.astype(np.float32)


class WindowedData:
    """A dataset made ready for training: resident tensors plus window starts per split.

    ``inputs`` is ``[T, N, 3]`` and ``targets`` ``[T, N, 1]``, both on ``device``. Building
    this object is the only place where the scaler is fit, and it is fit on the training
    range alone.
    """

    def __init__(self, ds: Dataset, split: SplitConfig | None = None,
                 device: torch.device | str = "cpu") -> None:
        self.split = split or SplitConfig()
        self.dataset = ds
        self.null_value = float(ds.null_value)
        self.device = torch.device(device)
        self.bounds = self.split.bounds(ds.num_steps)
        target = ds.values[..., 0]  # [T, N]
        seen = observed(target, ds.null_value)
        for name, (lo, hi) in self.bounds.items():
            if not seen[lo:hi].any():  # a scaler or a metric of nothing would be NaN or 0
                raise DataError(f"split '{name}' (steps {lo}-{hi - 1}) holds no observed "
                                f"target (every value is missing or equals the marker "
                                f"{ds.null_text}); use other split fractions or fix the data")
        t0, t1 = self.bounds["train"]
        self.scaler = Scaler.fit(target[t0:t1], ds.null_value)

        scaled = np.where(seen, self.scaler.transform(target), 0.0).astype(np.float32)
        tod, dow = time_features(ds.timestamps)
        n = ds.num_nodes
        inputs = np.stack(
            [scaled, np.repeat(tod[:, None], n, 1), np.repeat(dow[:, None], n, 1)], axis=-1
        )  # [T, N, 3]
        self.inputs = torch.from_numpy(inputs).to(self.device)
        self.targets = torch.from_numpy(np.ascontiguousarray(target[..., None])).to(self.device)

        span = self.split.input_len + self.split.output_len
        self.starts: dict[str, torch.Tensor] = {}
        for name, (lo, hi) in self.bounds.items():
            if hi - lo < span:
                raise DataError(
                    f"split '{name}' has {hi - lo} steps, fewer than one window ({span}); "
                    f"use a longer series or other split fractions"
                )
            self.starts[name] = torch.arange(lo, hi - span + 1, device=self.device)
        self._in_offsets = torch.arange(self.split.input_len, device=self.device)
        self._out_offsets = torch.arange(
            self.split.input_len, span, device=self.device
        )

    @property
    def num_nodes(self) -> int:
        return self.inputs.shape[1]

    @property
    def num_features(self) -> int:
        return self.inputs.shape[2]

    def num_windows(self, split: str) -> int:
        return len(self.starts[split])

    def batch(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather ``x [B, L_in, N, 3]`` and ``y [B, L_out, N, 1]`` for window start indices."""
        x = self.inputs[starts[:, None] + self._in_offsets]  # [B, L_in, N, 3]
        y = self.targets[starts[:, None] + self._out_offsets]  # [B, L_out, N, 1]
        return x, y

    def batches(self, split: str, batch_size: int, generator: torch.Generator | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of a split; shuffled when a generator is given (training), else in order.

        The permutation is drawn on the CPU from ``generator`` so that a CPU and a CUDA run
        with the same seed visit windows in the same order.
        """
        starts = self.starts[split]
        if generator is not None:
            order = torch.randperm(len(starts), generator=generator).to(self.device)
            starts = starts[order]
        for i in range(0, len(starts), batch_size):
            yield self.batch(starts[i:i + batch_size])

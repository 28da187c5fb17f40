"""Reference forecasters that need no training: historical average and last-value persistence.

Both are scored over the same windows with the same masked metrics as the models, so a
report can put them in the same table for scale.

- Historical average: for each sensor, the mean observed value at the same time of week in
  the training split. A time-of-week slot with no training observation (a one-week series
  whose training part misses that weekday) falls back to the mean at the same time of day
  over training days of the same kind (weekday or weekend), then to the sensor's training
  mean, then to the global training mean.
- Persistence: every future step repeats the last reading observed at or before the
  forecast time (the last input step); a sensor never observed so far repeats the training
  mean. Only the past is used, so this is a fair causal forecaster.
"""

from __future__ import annotations

import numpy as np
import torch

from stforecast.datasets.base import observed
from stforecast.metrics import HorizonMetrics
from stforecast.windows import WindowedData, time_features

BASELINES = ("historical_average", "persistence")


def _slot_means(values: np.ndarray, seen: np.ndarray, slots: np.ndarray, n_slots: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per (slot, sensor) sums of observed values and counts; ``values`` ``[T, N]``."""
    total = np.zeros((n_slots, values.shape[1]))
    count = np.zeros((n_slots, values.shape[1]))
    np.add.at(total, slots, np.where(seen, values, 0.0))
    np.add.at(count, slots, seen.astype(np.float64))
    return total, count


def historical_average_table(data: WindowedData) -> np.ndarray:
    """``[T, N]`` historical-average prediction for every step of the series."""
    ds = data.dataset
    target = ds.values[..., 0].astype(np.float64)
    seen = observed(target, ds.null_value)
    tod, dow = time_features(ds.timestamps)
    per_day = 1440 // ds.interval_minutes
    tod_i = np.minimum((tod * per_day).astype(np.int64), per_day - 1)
    dow_i = dow.astype(np.int64)
    week_slot = dow_i * per_day + tod_i
    kind_slot = (dow_i >= 5).astype(np.int64) * per_day + tod_i  # weekday / weekend
    lo, hi = data.bounds["train"]

    node_total = np.where(seen[lo:hi], target[lo:hi], 0.0).sum(0)
    node_count = seen[lo:hi].sum(0)
    global_mean = node_total.sum() / max(node_count.sum(), 1)
    pred = np.where(node_count > 0, node_total / np.maximum(node_count, 1), global_mean)
    pred = np.broadcast_to(pred, target.shape).copy()
    # Coarse to fine: each finer table overwrites where it has data.
    for slots, n in ((kind_slot, 2 * per_day), (week_slot, 7 * per_day)):
        total, count = _slot_means(target[lo:hi], seen[lo:hi], slots[lo:hi], n)
        has = count[slots] > 0
        pred[has] = (total[slots] / np.maximum(count[slots], 1))[has]
    return pred.astype(np.float32)


def persistence_table(data: WindowedData) -> np.ndarray:
    """``[T, N]`` last observed value at or before each step (training mean before any)."""
    ds = data.dataset
    target = ds.values[..., 0]
    seen = observed(target, ds.null_value)
    idx = np.where(seen, np.arange(len(target))[:, None], -1)
    last = np.maximum.accumulate(idx, axis=0)  # [T, N] index of the last observation
    filled = np.take_along_axis(target, np.maximum(last, 0), axis=0)
    return np.where(last >= 0, filled, data.scaler.mean).astype(np.float32)


def evaluate_baseline(name: str, data: WindowedData, split: str = "test",
                      batch_size: int = 1024) -> dict[str, float]:
    """Masked metrics of a baseline over a split's windows, keyed like model metrics."""
    if name == "historical_average":
        table = torch.from_numpy(historical_average_table(data))
    elif name == "persistence":
        table = torch.from_numpy(persistence_table(data))
    else:
        raise KeyError(f"unknown baseline '{name}'; known: {', '.join(BASELINES)}")
    table = table.to(data.device)[..., None]  # [T, N, 1]
    inp, out = data.split.input_len, data.split.output_len
    acc = HorizonMetrics(out, data.null_value, data.device)
    starts_all = data.starts[split]
    for i in range(0, len(starts_all), batch_size):
        starts = starts_all[i:i + batch_size]
        _, y = data.batch(starts)
        if name == "persistence":
            # The last input step's carried-forward value, repeated over the horizon.
            pred = table[starts + inp - 1][:, None].expand(-1, out, -1, -1)
        else:
            pred = table[starts[:, None] + torch.arange(inp, inp + out, device=data.device)]
        acc.update(pred, y)
    return acc.compute()

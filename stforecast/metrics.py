"""Masked MAE, RMSE and MAPE on the original scale.

A target equal to the null value (0.0 for speeds, METR-LA's missing marker) or not finite is
excluded; with ``null_value`` NaN ("none") only NaN cells are missing and zeros are values.
MAPE also excludes targets equal to zero, whatever the null value. Metrics over a whole split
are computed per horizon as sum over observed entries / their count; "overall" is the mean
of the per-horizon values over all output steps, the convention of the Graph WaveNet and
DCRNN evaluation code that published METR-LA numbers come from.

Names follow ``<metric>`` for overall and ``<metric>_h<k>`` for the k-th predicted step
(``mae_h3`` is 15 minutes ahead at 5-minute data).
"""

from __future__ import annotations

import torch

HORIZONS = (3, 6, 12)
METRICS = ("mae", "rmse", "mape")


def null_mask(target: torch.Tensor, null_value: float) -> torch.Tensor:
    """True where a target counts; the same rule as ``datasets.base.observed``."""
    ok = torch.isfinite(target)
    if null_value == null_value:  # not NaN
        ok &= target != null_value
    return ok


def _masked_abs_error(pred: torch.Tensor, target: torch.Tensor, null_value: float):
    """``|pred - target|`` with unobserved targets zeroed, and the observed mask.

    Unobserved targets are replaced before the difference is taken: a NaN target (the
    missing marker when ``null_value`` is NaN) would otherwise send NaN through the gradient
    of the branch ``torch.where`` discards."""
    mask = null_mask(target, null_value)
    target = torch.where(mask, target, torch.zeros_like(target))
    return torch.where(mask, (pred - target).abs(), torch.zeros_like(pred)), mask


def masked_mae(pred: torch.Tensor, target: torch.Tensor, null_value: float = 0.0) -> torch.Tensor:
    """Mean absolute error over observed targets; the training loss. 0 if nothing is observed.

    This and the two functions below score one batch; evaluation over a whole split uses
    ``HorizonMetrics``, which accumulates the same sums per horizon.
    """
    err, mask = _masked_abs_error(pred, target, null_value)
    return err.sum() / mask.sum().clamp_min(1)


def masked_mae_stacked(pred: torch.Tensor, target: torch.Tensor,
                       null_value: float = 0.0) -> torch.Tensor:
    """``masked_mae`` of each leading slice at once (``[K, ...]`` → ``[K]``): the losses of K
    runs trained together, in one reduction instead of K."""
    err, mask = _masked_abs_error(pred, target, null_value)
    dims = tuple(range(1, target.dim()))
    return err.sum(dims) / mask.sum(dims).clamp_min(1)


def masked_rmse(pred: torch.Tensor, target: torch.Tensor, null_value: float = 0.0) -> torch.Tensor:
    mask = null_mask(target, null_value)
    target = torch.where(mask, target, torch.zeros_like(target))
    err = torch.where(mask, (pred - target).square(), torch.zeros_like(pred))
    return (err.sum() / mask.sum().clamp_min(1)).sqrt()


def masked_mape(pred: torch.Tensor, target: torch.Tensor, null_value: float = 0.0) -> torch.Tensor:
    """Mean absolute percentage error in percent, over observed non-zero targets."""
    mask = null_mask(target, null_value) & (target != 0)
    safe = torch.where(mask, target, torch.ones_like(target))
    err = torch.where(mask, ((pred - safe) / safe).abs(), torch.zeros_like(pred))
    return 100.0 * err.sum() / mask.sum().clamp_min(1)


class HorizonMetrics:
    """Accumulates masked sums per output step over many batches of ``[B, L, N, 1]``.

    Sums stay on the device and accumulate in float64 so that a long evaluation adds no host
    synchronisation and no float32 drift; ``compute()`` reads them once.
    """

    def __init__(self, output_len: int, null_value: float, device: torch.device) -> None:
        self.null_value = null_value
        # rows: abs err, squared err, abs pct err, count, count for MAPE
        self.sums = torch.zeros(5, output_len, dtype=torch.float64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        mask = null_mask(target, self.null_value)
        pmask = mask & (target != 0)
        err = torch.where(mask, pred - torch.where(mask, target, 0.0), 0.0)
        pct = torch.where(pmask, err / target, 0.0).abs()  # 0/0 entries are masked out
        dims, f64 = (0, 2, 3), torch.float64  # reduce batch, nodes, features; keep time
        self.sums += torch.stack([
            err.abs().sum(dims, dtype=f64), err.square().sum(dims, dtype=f64),
            pct.sum(dims, dtype=f64), mask.sum(dims, dtype=f64), pmask.sum(dims, dtype=f64),
        ])

    def compute(self, horizons: tuple[int, ...] = HORIZONS) -> dict[str, float]:
        abs_sum, sq_sum, pct_sum, count, pcount = self.sums.cpu().unbind(0)
        step = {
            "mae": abs_sum / count.clamp_min(1),
            "rmse": (sq_sum / count.clamp_min(1)).sqrt(),
            "mape": 100.0 * pct_sum / pcount.clamp_min(1),
        }
        out: dict[str, float] = {}
        for name, per_step in step.items():
            out[name] = float(per_step.mean())
            for h in horizons:
                if h <= len(per_step):
                    out[f"{name}_h{h}"] = float(per_step[h - 1])
        return out

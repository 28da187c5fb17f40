"""Masked metrics against an independent numpy reference."""

import numpy as np
import pytest
import torch

from stforecast.metrics import (
    HorizonMetrics,
    masked_mae,
    masked_mae_stacked,
    masked_mape,
    masked_rmse,
)


def reference(pred: np.ndarray, target: np.ndarray, null: float) -> dict[str, float]:
    """Per-horizon masked metrics written with plain loops over numpy arrays ``[B, L, N, 1]``."""
    out = {}
    per = {"mae": [], "rmse": [], "mape": []}
    for h in range(target.shape[1]):
        p, t = pred[:, h].ravel(), target[:, h].ravel()
        keep = [i for i in range(len(t)) if np.isfinite(t[i]) and t[i] != null]
        keep_pct = [i for i in keep if t[i] != 0]
        per["mae"].append(np.mean([abs(p[i] - t[i]) for i in keep]))
        per["rmse"].append(np.sqrt(np.mean([(p[i] - t[i]) ** 2 for i in keep])))
        per["mape"].append(100 * np.mean([abs((p[i] - t[i]) / t[i]) for i in keep_pct]))
    for name, values in per.items():
        out[name] = float(np.mean(values))
        for h in (3, 6, 12):
            out[f"{name}_h{h}"] = float(values[h - 1])
    return out


@pytest.mark.parametrize("null", [0.0, -1.0])
@pytest.mark.parametrize("seed", range(4))
def test_horizon_metrics_match_numpy_reference(seed, null):
    rng = np.random.default_rng(seed)
    target = rng.uniform(5, 70, size=(7, 12, 5, 1))
    target[rng.random(target.shape) < 0.2] = null  # random missing readings
    target[rng.random(target.shape) < 0.03] = np.nan  # and some non-finite ones
    if null != 0.0:
        target[rng.random(target.shape) < 0.05] = 0.0  # zero but observed: MAPE skips it
    pred = target + rng.normal(0, 4, size=target.shape)
    pred = np.nan_to_num(pred, nan=30.0)
    acc = HorizonMetrics(12, null, torch.device("cpu"))
    # Uneven batches: sums must not depend on how the split is cut.
    for lo, hi in ((0, 3), (3, 4), (4, 7)):
        acc.update(torch.from_numpy(pred[lo:hi]).float(), torch.from_numpy(target[lo:hi]).float())
    got = acc.compute()
    want = reference(pred.astype(np.float32).astype(np.float64),
                     target.astype(np.float32).astype(np.float64), null)
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-5), k


def test_loss_functions_match_reference_on_one_batch(rng):
    target = rng.uniform(1, 60, size=(4, 12, 3, 1))
    target[rng.random(target.shape) < 0.3] = 0.0
    pred = target + rng.normal(0, 2, size=target.shape)
    t, p = torch.from_numpy(target), torch.from_numpy(pred)
    keep = target != 0
    assert masked_mae(p, t).item() == pytest.approx(np.abs(pred - target)[keep].mean())
    assert masked_rmse(p, t).item() == pytest.approx(np.sqrt(((pred - target)[keep] ** 2).mean()))
    assert masked_mape(p, t).item() == pytest.approx(
        100 * np.abs((pred - target)[keep] / target[keep]).mean())


def test_masked_values_do_not_change_the_metric():
    target = torch.tensor([[10.0, 0.0, 20.0]])
    a = masked_mae(torch.tensor([[11.0, 500.0, 18.0]]), target)
    b = masked_mae(torch.tensor([[11.0, -3.0, 18.0]]), target)
    assert a.item() == b.item() == pytest.approx(1.5)


def test_missing_targets_are_ignored_by_split_metrics():
    # The masked/unmasked confusion the metrics exist to avoid: a 0 target must not count.
    target = torch.tensor([50.0, 0.0, 40.0]).reshape(1, 1, 3, 1).expand(2, 12, 3, 1)
    pred = torch.tensor([52.0, 50.0, 40.0]).reshape(1, 1, 3, 1).expand(2, 12, 3, 1)
    acc = HorizonMetrics(12, 0.0, torch.device("cpu"))
    acc.update(pred, target)
    got = acc.compute()
    assert got["mae"] == pytest.approx(1.0) and got["mae_h12"] == pytest.approx(1.0)
    assert got["rmse"] == pytest.approx(2 ** 0.5)
    assert got["mape"] == pytest.approx(100 * (2 / 50) / 2)


def test_all_missing_gives_zero_not_nan():
    target = torch.zeros(2, 12, 3, 1)
    assert masked_mae(torch.ones_like(target), target).item() == 0.0


def test_stacked_loss_is_each_slice_s_loss(rng):
    pred = torch.tensor(rng.normal(50, 10, (4, 8, 12, 5, 1)), dtype=torch.float32)
    target = torch.tensor(rng.normal(50, 10, (4, 8, 12, 5, 1)), dtype=torch.float32)
    target[rng.random(target.shape) < 0.2] = 0.0
    target[3] = 0.0  # one member with nothing observed scores 0, as masked_mae does
    got = masked_mae_stacked(pred, target)
    want = torch.stack([masked_mae(pred[k], target[k]) for k in range(4)])
    assert got.shape == (4,)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)

"""Splits, scaler and windows: time order, no leakage, index-cut batches."""

import numpy as np
import pytest
import torch

from stforecast.datasets import DataError, Dataset, time_index
from stforecast.windows import SplitConfig, WindowedData, time_features


def make_dataset(t=500, n=4, seed=0, null_share=0.1) -> Dataset:
    rng = np.random.default_rng(seed)
    values = rng.uniform(20, 70, size=(t, n, 1)).astype(np.float32)
    values[rng.random(values.shape) < null_share] = 0.0
    return Dataset("toy", values, np.eye(n, dtype=np.float32),
                   time_index("2012-03-05 00:00", t, 5))


def test_split_bounds_match_the_reference_window_counts():
    # 2016 steps (one week) -> 1388 / 178 / 381 windows as the peer's protocol gives.
    bounds = SplitConfig().bounds(2016)
    span = 24
    counts = [hi - lo - span + 1 for lo, hi in bounds.values()]
    assert counts == [1388, 178, 381]
    assert bounds["train"][1] == bounds["val"][0] and bounds["val"][1] == bounds["test"][0]


def test_windows_stay_inside_their_split():
    data = WindowedData(make_dataset())
    for split, (lo, hi) in data.bounds.items():
        starts = data.starts[split]
        assert int(starts.min()) == lo
        assert int(starts.max()) + 24 <= hi  # inputs and targets both inside


def test_scaler_uses_only_observed_training_values():
    ds = make_dataset()
    data = WindowedData(ds)
    lo, hi = data.bounds["train"]
    train = ds.values[lo:hi, :, 0]
    obs = train[train != 0]
    assert data.scaler.mean == pytest.approx(obs.mean(), rel=1e-6)
    assert data.scaler.std == pytest.approx(obs.std(), rel=1e-6)
    # Changing validation and test values must not move the scaler.
    values = ds.values.copy()
    values[hi:] += 100.0
    moved = WindowedData(Dataset("toy", values, ds.adjacency, ds.timestamps))
    assert moved.scaler == data.scaler


def test_batch_is_the_series_cut_by_index():
    ds = make_dataset()
    data = WindowedData(ds)
    starts = torch.tensor([0, 17, 300])
    x, y = data.batch(starts)
    assert x.shape == (3, 12, 4, 3) and y.shape == (3, 12, 4, 1)
    raw = ds.values[..., 0]
    for b, s in enumerate(starts.tolist()):
        np.testing.assert_array_equal(y[b, :, :, 0].numpy(), raw[s + 12:s + 24])
        seen = raw[s:s + 12] != 0
        expect = np.where(seen, (raw[s:s + 12] - data.scaler.mean) / data.scaler.std, 0.0)
        np.testing.assert_allclose(x[b, :, :, 0].numpy(), expect, rtol=1e-5, atol=1e-6)


def test_shuffled_batches_cover_each_training_window_once(monkeypatch):
    data = WindowedData(make_dataset())
    seen = []
    batch = data.batch
    monkeypatch.setattr(data, "batch", lambda starts: (seen.append(starts.clone()),
                                                       batch(starts))[1])

    def epoch(seed):
        seen.clear()
        for _ in data.batches("train", 32, torch.Generator().manual_seed(seed)):
            pass
        return torch.cat(seen)

    first = epoch(3)
    assert sorted(first.tolist()) == data.starts["train"].tolist()  # each window exactly once
    assert not torch.equal(first, data.starts["train"])  # shuffled
    assert torch.equal(epoch(3), first)  # the same order for the same seed
    assert not torch.equal(epoch(4), first)


def test_time_features():
    ts = time_index("2012-03-01 00:00", 300, 5)  # a Thursday
    tod, dow = time_features(ts)
    assert tod[0] == 0.0 and tod[1] == pytest.approx(5 / 1440)
    assert dow[0] == 3 and dow[288] == 4  # Thursday, then Friday
    assert tod.max() < 1.0


def test_too_short_split_is_a_clear_error():
    with pytest.raises(DataError, match="fewer than one window"):
        WindowedData(make_dataset(t=60))

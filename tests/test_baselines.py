"""Historical average and persistence against direct numpy computations."""

import numpy as np
import pytest

from stforecast.baselines import evaluate_baseline, historical_average_table, persistence_table
from stforecast.datasets import Dataset, time_index
from stforecast.windows import WindowedData


def dataset(days=21, n=3, seed=0):
    rng = np.random.default_rng(seed)
    t = days * 288
    values = rng.uniform(30, 70, size=(t, n, 1)).astype(np.float32)
    values[rng.random(values.shape) < 0.1] = 0.0
    return Dataset("toy", values, np.eye(n, dtype=np.float32),
                   time_index("2012-03-05 00:00", t, 5))  # a Monday


def test_historical_average_is_the_training_mean_at_the_same_time_of_week():
    ds = dataset()
    data = WindowedData(ds)
    table = historical_average_table(data)
    lo, hi = data.bounds["train"]
    v = ds.values[:, :, 0]
    week = 7 * 288
    checked = 0
    for t in range(hi, ds.num_steps, 97):
        for node in range(ds.num_nodes):
            same = [s for s in range(lo, hi) if s % week == t % week and v[s, node] != 0]
            if same:  # slots with no observation use the fallback, tested below
                assert table[t, node] == pytest.approx(v[same, node].mean(), rel=1e-5)
                checked += 1
    assert checked > 50


def test_historical_average_falls_back_when_a_weekday_is_unseen():
    ds = dataset(days=7)  # training covers Monday to Friday evening: no weekend
    data = WindowedData(ds)
    table = historical_average_table(data)
    lo, hi = data.bounds["train"]
    v = ds.values[:, :, 0]
    t = ds.num_steps - 10  # Sunday evening: a weekend slot, no weekend in training
    node = 0
    tod = t % 288
    same_tod = [s for s in range(lo, hi) if s % 288 == tod and v[s, node] != 0]
    # No weekend in training either: falls back to the sensor's training mean.
    assert not same_tod or table[t, node] != pytest.approx(v[same_tod, node].mean())
    train = v[lo:hi, node]
    assert table[t, node] == pytest.approx(train[train != 0].mean(), rel=1e-5)


def test_persistence_repeats_the_last_observed_value():
    ds = dataset()
    table = persistence_table(WindowedData(ds))
    v = ds.values[:, :, 0]
    for t in (100, 2000, 5000):
        for node in range(ds.num_nodes):
            last = max(s for s in range(t + 1) if v[s, node] != 0)
            assert table[t, node] == v[last, node]


def test_persistence_error_grows_with_horizon_on_smooth_data():
    t, n = 3000, 4
    steps = np.arange(t)
    values = (50 + 15 * np.sin(2 * np.pi * steps / 288))[:, None].repeat(n, 1)
    ds = Dataset("smooth", values.astype(np.float32)[..., None], np.eye(n, dtype=np.float32),
                 time_index("2012-03-05", t, 5))
    m = evaluate_baseline("persistence", WindowedData(ds))
    assert m["mae_h3"] < m["mae_h6"] < m["mae_h12"]
    with pytest.raises(KeyError):
        evaluate_baseline("oracle", WindowedData(ds))

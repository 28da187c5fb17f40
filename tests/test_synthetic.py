"""The embedded ``synthetic-la`` generator: reproducible, well-formed, and traffic-like."""

from __future__ import annotations

import numpy as np
import pytest

from stforecast.baselines import evaluate_baseline
from stforecast.datasets import DataError, load_dataset
from stforecast.datasets.calibrate import _lag_corr, _pair_corr
from stforecast.datasets.calibrate import main as calibrate_main
from stforecast.datasets.synthetic import MISSING_SHARE, generate, road_network
from stforecast.windows import WindowedData


@pytest.fixture(scope="module")
def two_weeks():
    """100 sensors, 14 days, complete: the traffic-pattern tests read it."""
    return generate(nodes=100, days=14, seed=0, missing_share=0.0)


def _hour_and_weekday(ds):
    day = ds.timestamps.astype("datetime64[D]")
    hour = (ds.timestamps - day).astype("timedelta64[h]").astype(np.int64)
    weekday = (day.astype(np.int64) + 3) % 7  # 0 = Monday
    return hour, weekday


def test_same_seed_gives_identical_arrays_and_other_seeds_differ():
    a = generate(nodes=30, days=2, seed=3)
    b = generate(nodes=30, days=2, seed=3)
    c = generate(nodes=30, days=2, seed=4)
    assert np.array_equal(a.values, b.values)
    assert np.array_equal(a.adjacency, b.adjacency)
    assert np.array_equal(a.timestamps, b.timestamps)
    assert a.sensor_ids == b.sensor_ids
    assert not np.array_equal(a.values, c.values)
    assert not np.array_equal(a.adjacency, c.adjacency)


def test_registry_loads_it_with_options():
    ds = load_dataset("synthetic-la", options={"nodes": 50, "days": 7, "seed": 1})
    assert ds.name == "synthetic-la"
    assert np.array_equal(ds.values, generate(nodes=50, days=7, seed=1).values)
    with pytest.raises((KeyError, DataError), match="no option 'sigma'"):
        load_dataset("synthetic-la", options={"sigma": 3})


@pytest.mark.parametrize("kwargs", [{"nodes": 3}, {"days": 0}, {"days": 1.5}, {"seed": -1},
                                    {"missing_share": 0.7}, {"start": "not a date"}])
def test_bad_arguments_raise_data_error(kwargs):
    with pytest.raises(DataError, match="synthetic-la"):
        generate(**{"nodes": 20, "days": 1, **kwargs})


@pytest.mark.parametrize("nodes, days", [(23, 3), (4, 1), (61, 2)])
def test_shapes_dtypes_and_time_axis(nodes, days):
    ds = generate(nodes=nodes, days=days, seed=0, start="2012-03-05 06:00")
    steps = days * 288
    assert ds.values.shape == (steps, nodes, 1)
    assert ds.values.dtype == np.float32
    assert ds.adjacency.shape == (nodes, nodes)
    assert ds.adjacency.dtype == np.float32
    assert len(ds.sensor_ids) == len(set(ds.sensor_ids)) == nodes
    assert ds.timestamps[0] == np.datetime64("2012-03-05T06:00")
    assert np.all(np.diff(ds.timestamps) == np.timedelta64(5, "m"))
    assert ds.interval_minutes == 5 and ds.null_value == 0.0 and ds.units == "mph"
    seen = ds.values[..., 0][ds.mask]
    assert seen.min() > 0.0 and seen.max() <= 70.0


def test_speeds_look_like_freeway_speeds(two_weeks):
    v = two_weeks.values[..., 0]
    free_flow = np.percentile(v, 95, axis=0)  # per sensor
    assert 0.8 <= np.mean((free_flow >= 60) & (free_flow <= 70)) < 1.0
    assert 55 < np.median(v) < 68
    assert 0.03 < np.mean(v < 40) < 0.2  # congested, but not most of the time


def test_adjacency_is_a_thresholded_directed_kernel(two_weeks):
    a = two_weeks.adjacency
    assert np.all(np.diag(a) == 1.0)
    off = a[~np.eye(len(a), dtype=bool)]
    assert np.all((off == 0) | ((off >= 0.1) & (off <= 1.0)))
    assert not np.array_equal(a, a.T)  # road distance is directed
    assert np.sum((a > 0) & (a.T == 0)) > len(a)  # many one-way pairs, as in METR-LA
    linked = (np.maximum(a, a.T) > 0) & ~np.eye(len(a), dtype=bool)
    assert linked.any(axis=1).all()  # every sensor has a neighbour
    assert 3 < (a > 0).sum(axis=1).mean() < 15


def test_road_network_distances_follow_the_carriageway():
    net = road_network(60, np.random.default_rng(0))
    same = net.carriageway[:, None] == net.carriageway[None, :]
    ahead = net.along[None, :] - net.along[:, None]
    near = same & (ahead >= 0) & (ahead < 10)
    # On one carriageway the road distance is the distance driven; backwards it is longer.
    assert np.allclose(net.distance[near], ahead[near])
    behind = same & (ahead < 0)
    assert np.all(net.distance[behind] > -ahead[behind])


def test_missing_share_and_its_mechanisms():
    ds = generate(nodes=100, days=14, seed=2)
    assert abs(ds.missing_share - MISSING_SHARE) < 0.02
    miss = ~ds.mask
    assert miss.all(axis=1).sum() >= 3  # whole-network outage steps
    # Multi-hour outages of one sensor (a run of 2 h or more) and isolated drops.
    padded = np.pad(miss, ((1, 1), (0, 0))).astype(np.int8)
    edges = np.diff(padded, axis=0)
    runs = np.flatnonzero(edges.T == -1) - np.flatnonzero(edges.T == 1)
    assert (runs >= 24).sum() >= 20
    assert (runs == 1).sum() >= 1000
    assert generate(nodes=20, days=2, seed=2, missing_share=0.0).missing_share == 0.0


def test_weekday_rush_hours_and_lighter_weekends(two_weeks):
    v = two_weeks.values[..., 0]
    hour, weekday = _hour_and_weekday(two_weeks)

    def mean_speed(days, hours):
        return v[np.isin(weekday, days) & np.isin(hour, hours)].mean()

    workdays, weekend = [0, 1, 2, 3, 4], [5, 6]
    morning, evening = mean_speed(workdays, [7, 8]), mean_speed(workdays, [17, 18])
    midday, late = mean_speed(workdays, [11, 12, 13]), mean_speed(workdays, [21, 22])
    assert morning < midday - 4 and morning < late - 4
    assert evening < midday - 4 and evening < late - 4
    # Weekends: no commute dips, and the slowest weekend hour is faster than the weekday one.
    assert mean_speed(weekend, [7, 8]) > morning + 4
    assert mean_speed(weekend, [17, 18]) > evening + 4
    slowest = {k: min(mean_speed(d, [h]) for h in range(24))
               for k, d in (("weekday", workdays), ("weekend", weekend))}
    assert slowest["weekend"] > slowest["weekday"] + 3


def test_congestion_reaches_upstream_sensors_later():
    """Onsets of slowdowns (speed below 40 mph) come later at the upstream sensor of a pair."""
    ds = generate(nodes=60, days=7, seed=0, missing_share=0.0)
    v = ds.values[..., 0].astype(np.float64)
    smooth = (v[:-2] + v[1:-1] + v[2:]) / 3  # ignore single noisy readings
    a = ds.adjacency
    road = np.array([s.split("-")[0] for s in ds.sensor_ids])  # "fwy3b-07": carriageway fwy3b
    # (upstream i, downstream j): j is a short drive ahead of i on the same carriageway.
    pairs = np.argwhere((a > 0) & (a.T == 0) & (road[:, None] == road[None, :]))
    delays = []
    for day in range(7):
        for lo, hi in ((5, 11), (13, 20)):  # the morning and evening rush of that day
            window = smooth[day * 288 + lo * 12: day * 288 + hi * 12] < 40
            started = window.any(axis=0)
            onset = window.argmax(axis=0)
            for i, j in pairs:
                if started[i] and started[j]:
                    delays.append(onset[i] - onset[j])
    delays = np.array(delays)
    assert len(delays) > 100
    assert np.median(delays) >= 1  # at least 5 minutes later upstream
    assert np.mean(delays > 0) > 2 * np.mean(delays < 0)


def test_persistence_wins_short_horizons_and_history_wins_long_ones():
    ds = generate(nodes=60, days=7, seed=0)
    data = WindowedData(ds)
    ha = evaluate_baseline("historical_average", data)
    last = evaluate_baseline("persistence", data)
    assert last["mae_h3"] < ha["mae_h3"]
    assert ha["mae_h12"] < last["mae_h12"]
    # Both in the range the real data puts them (los-loop: HA 4.6, persistence 3.6 -> 5.8).
    assert 3.0 < ha["mae"] < 6.5
    assert 2.5 < last["mae_h3"] < 4.5 and 4.0 < last["mae_h12"] < 7.5


def test_calibration_correlations_match_numpy_on_complete_data():
    ds = generate(nodes=12, days=2, seed=5, missing_share=0.0)
    x = ds.values[..., 0].astype(np.float64)
    seen = np.ones_like(x, dtype=bool)
    assert np.allclose(_pair_corr(x, seen), np.corrcoef(x.T), atol=1e-9)
    lag1 = np.mean([np.corrcoef(x[1:, i], x[:-1, i])[0, 1] for i in range(x.shape[1])])
    assert _lag_corr(x, seen, 1) == pytest.approx(lag1)


def test_calibrate_says_in_one_line_when_los_loop_is_absent(tmp_path, capsys):
    assert calibrate_main(["--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "los_speed.csv" in err and "Traceback" not in err


def test_calibrate_prints_the_side_by_side_table(shared_data, capsys):
    args = ["--data-dir", str(shared_data), "--nodes", "30", "--days", "2", "--no-default-size"]
    assert calibrate_main(args) == 0
    out = capsys.readouterr().out
    assert "| statistic | los-loop | synthetic-la (30 x 2 d) |" in out
    row = next(line for line in out.splitlines() if line.startswith("| HA MAE h3 |"))
    assert row.split("|")[2].strip() == "4.65"  # the real week's historical average at h3

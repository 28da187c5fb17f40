"""Loaders on the real files in ../shared/data and on small files written in the real formats."""

from __future__ import annotations

import os
import pickle
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stforecast.datasets import DataError, load_dataset
from stforecast.datasets.loaders import load_path, read_adjacency, read_dcrnn_pickle
from stforecast.graph import edges_to_distances, gaussian_kernel

LOS_FIRST_ROW = [64.375, 67.625, 67.125, 61.5, 66.875]
STEPS = 96  # small series: enough for Dataset's 24-step minimum, fast to write


@pytest.fixture(scope="module")
def los_loop(shared_data: Path):
    return load_dataset("los-loop", data_dir=shared_data)


@pytest.fixture(scope="module")
def metr_graph(shared_data: Path) -> tuple[tuple[str, ...], np.ndarray]:
    return read_dcrnn_pickle(shared_data / "metr-la-graph" / "adj_mx.pkl")


def write_dcrnn_h5(path: Path, columns: list, start: str, rng: np.random.Generator,
                   steps: int = STEPS) -> pd.DataFrame:
    """A DCRNN-style ``.h5``: key ``df``, 5-minute DatetimeIndex, one column per sensor."""
    values = rng.uniform(20.0, 70.0, size=(steps, len(columns)))
    values[rng.random(values.shape) < 0.05] = 0.0  # DCRNN's missing marker
    values[3, 2] = np.nan
    index = pd.date_range(start, periods=steps, freq="5min")
    frame = pd.DataFrame(values, index=index, columns=columns)
    frame.to_hdf(path, key="df", mode="w")
    return frame


def write_series_csv(path: Path, ids: list[str], rng: np.random.Generator,
                     stamps: pd.DatetimeIndex | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(rng.uniform(1.0, 9.0, size=(STEPS, len(ids))).round(3), columns=ids)
    if stamps is not None:
        frame.insert(0, "time", stamps.strftime("%Y-%m-%d %H:%M"))
    frame.to_csv(path, index=False)
    return frame


# --------------------------------------------------------------------------- real files

def test_los_loop_real_files(los_loop):
    ds = los_loop
    assert ds.values.shape == (2016, 207, 1)
    np.testing.assert_array_equal(ds.values[0, :5, 0], LOS_FIRST_ROW)
    assert ds.timestamps[0] == np.datetime64("2012-03-01T00:00")
    assert ds.timestamps[-1] == np.datetime64("2012-03-07T23:55")
    assert (np.diff(ds.timestamps) == np.timedelta64(5, "m")).all()
    np.testing.assert_array_equal(ds.adjacency, ds.adjacency.T)
    assert ds.missing_share == 0.0
    assert ds.sensor_ids[:2] == ("773869", "767541")


def test_los_loop_adjacency_is_the_symmetrised_dcrnn_graph(los_loop, metr_graph):
    ids, w = metr_graph
    assert ids == los_loop.sensor_ids
    assert not np.array_equal(w, w.T)  # the pickle itself is directed
    np.testing.assert_allclose(los_loop.adjacency, np.maximum(w, w.T), atol=1e-6)


@pytest.mark.parametrize("name, h5, graph, pkl, start, id_type", [
    ("metr-la", "metr-la.h5", "metr-la-graph", "adj_mx.pkl", "2012-03-01", str),
    ("pems-bay", "pems-bay.h5", "pems-bay-graph", "adj_mx_bay.pkl", "2017-01-01", int),
])
def test_dcrnn_h5_by_name_follows_the_pickle_order(tmp_path, shared_data, rng, name, h5, graph,
                                                   pkl, start, id_type):
    ids, w = read_dcrnn_pickle(shared_data / graph / pkl)
    shuffled = [id_type(s) for s in rng.permutation(ids)]
    folder = tmp_path / name
    folder.mkdir()
    frame = write_dcrnn_h5(folder / h5, shuffled, start, rng)
    shutil.copy(shared_data / graph / pkl, folder / pkl)

    ds = load_dataset(name, data_dir=tmp_path)

    assert ds.sensor_ids == ids
    expected = np.nan_to_num(frame[[id_type(s) for s in ids]].to_numpy(np.float32), nan=0.0)
    np.testing.assert_array_equal(ds.values[..., 0], expected)
    np.testing.assert_array_equal(ds.mask, expected != 0.0)
    assert 0.0 < ds.missing_share < 0.1
    np.testing.assert_array_equal(ds.adjacency, w)
    np.testing.assert_array_equal(ds.timestamps, frame.index.to_numpy().astype("datetime64[ns]"))
    assert ds.units == "mph" and ds.interval_minutes == 5


def test_dcrnn_h5_gap_in_the_index_becomes_missing_steps(tmp_path, shared_data, metr_graph, rng):
    ids, _ = metr_graph
    folder = tmp_path / "metr-la"
    folder.mkdir()
    frame = write_dcrnn_h5(folder / "metr-la.h5", list(ids), "2012-03-11", rng)
    frame.drop(frame.index[24:36]).to_hdf(folder / "metr-la.h5", key="df", mode="w")
    shutil.copy(shared_data / "metr-la-graph" / "adj_mx.pkl", folder / "adj_mx.pkl")

    ds = load_dataset("metr-la", data_dir=tmp_path)

    assert ds.num_steps == STEPS and ds.meta["inserted_steps"] == 12
    assert not ds.mask[24:36].any()
    np.testing.assert_array_equal(ds.timestamps, frame.index.to_numpy().astype("datetime64[ns]"))
    np.testing.assert_array_equal(ds.values[40, :, 0], frame.iloc[40].to_numpy(np.float32))


def test_dcrnn_h5_without_pytables_names_the_extra(tmp_path, shared_data, metr_graph, rng,
                                                   monkeypatch):
    folder = tmp_path / "metr-la"
    folder.mkdir()
    write_dcrnn_h5(folder / "metr-la.h5", list(metr_graph[0]), "2012-03-01", rng)
    shutil.copy(shared_data / "metr-la-graph" / "adj_mx.pkl", folder / "adj_mx.pkl")
    monkeypatch.setitem(sys.modules, "tables", None)  # makes `import tables` fail
    with pytest.raises(DataError, match=r"pip install 'stbench\[hdf5\]'") as err:
        load_dataset("metr-la", data_dir=tmp_path)
    assert str(folder / "metr-la.h5") in str(err.value)


def test_dcrnn_h5_sensor_ids_must_match_the_pickle(tmp_path, shared_data, metr_graph, rng):
    ids, _ = metr_graph
    folder = tmp_path / "metr-la"
    folder.mkdir()
    write_dcrnn_h5(folder / "metr-la.h5", [*ids[:-1], "999999"], "2012-03-01", rng)
    shutil.copy(shared_data / "metr-la-graph" / "adj_mx.pkl", folder / "adj_mx.pkl")
    with pytest.raises(DataError) as err:
        load_dataset("metr-la", data_dir=tmp_path)
    message = str(err.value)
    assert ids[-1] in message and "999999" in message and "adj_mx.pkl" in message


def test_pems_bay_graph_rebuilt_from_road_distances(shared_data):
    ids, w = read_dcrnn_pickle(shared_data / "pems-bay-graph" / "adj_mx_bay.pkl")
    distances = shared_data / "pems-bay-graph" / "distances_bay_2017.csv"

    rebuilt, order = read_adjacency(distances, sensor_ids=ids, symmetric=False)
    assert order is None  # rows follow the given sensor ids
    np.testing.assert_allclose(rebuilt, w, atol=1e-6)

    edges = pd.read_csv(distances, header=None, dtype={0: str, 1: str})
    index = {s: i for i, s in enumerate(ids)}
    d = edges_to_distances(len(ids), edges[0].map(index).to_numpy(),
                           edges[1].map(index).to_numpy(), edges[2].to_numpy())
    np.testing.assert_allclose(gaussian_kernel(d), w, atol=1e-6)

    mirrored, _ = read_adjacency(distances, sensor_ids=ids, symmetric=True)
    assert np.abs(mirrored - w).max() > 0.1  # DCRNN's graph really is directed


@pytest.mark.parametrize("name, stem, nodes, start", [
    ("pems04", "PEMS04", 307, "2018-01-01T00:00"),
    ("pems08", "PEMS08", 170, "2016-07-01T00:00"),
])
def test_pems_npz_with_real_distance_list(tmp_path, shared_data, rng, name, stem, nodes, start):
    folder = tmp_path / name
    folder.mkdir()
    data = rng.integers(1, 400, size=(STEPS, nodes, 3)).astype(np.float64)
    data[5, 3, 0] = 0.0
    np.savez(folder / f"{stem}.npz", data=data)
    csv = folder / f"{stem}.csv"
    shutil.copy(shared_data / "pems04-pems08-graph" / f"{stem}_distance.csv", csv)

    ds = load_dataset(name, data_dir=tmp_path)

    np.testing.assert_array_equal(ds.values, data.astype(np.float32))
    assert ds.units == "vehicles/5min" and ds.interval_minutes == 5
    assert ds.timestamps[0] == np.datetime64(start)
    assert not ds.mask[5, 3] and ds.mask.sum() == STEPS * nodes - 1

    # Independent reference: undirected road distance, DCRNN kernel, weights below 0.1 cut.
    edges = pd.read_csv(csv)
    d = np.full((nodes, nodes), np.inf)
    np.fill_diagonal(d, 0.0)
    for a, b, cost in edges.itertuples(index=False):
        d[a, b] = d[b, a] = min(d[a, b], cost)
    sigma = d[np.isfinite(d)].std()
    w = np.where(np.isfinite(d), np.exp(-np.square(np.where(np.isfinite(d), d, 0.0) / sigma)), 0)
    w[w < 0.1] = 0.0
    np.testing.assert_allclose(ds.adjacency, w, atol=1e-6)
    np.testing.assert_array_equal(np.diag(ds.adjacency), np.ones(nodes))

    binary = load_dataset(name, data_dir=tmp_path, options={"edge_weights": "binary"})
    expected = np.eye(nodes, dtype=np.float32)
    expected[edges["from"], edges["to"]] = expected[edges["to"], edges["from"]] = 1.0
    np.testing.assert_array_equal(binary.adjacency, expected)
    assert (binary.adjacency > 0).sum() > (ds.adjacency > 0).sum()  # the kernel cuts far links


# --------------------------------------------------------------------------- generic PATH

def test_folder_csv_with_timestamps_and_labelled_matrix(tmp_path, rng):
    ids = ["s1", "s2", "s3", "s4"]
    stamps = pd.date_range("2021-05-03 06:00", periods=STEPS, freq="15min")
    frame = write_series_csv(tmp_path / "data.csv", ids, rng, stamps)
    frame.loc[7, "s3"] = np.nan
    frame.to_csv(tmp_path / "data.csv", index=False)
    adj = rng.uniform(0.0, 1.0, size=(4, 4)).astype(np.float32)
    reverse = ids[::-1]  # stored in another order: the header must put it right
    pd.DataFrame(adj[::-1, ::-1], columns=reverse).to_csv(tmp_path / "adj.csv", index=False)

    ds = load_path(tmp_path)

    assert ds.name == tmp_path.name and ds.sensor_ids == tuple(ids)
    assert ds.interval_minutes == 15
    np.testing.assert_array_equal(ds.timestamps, stamps.to_numpy().astype("datetime64[ns]"))
    expected = np.nan_to_num(frame[ids].to_numpy(np.float32), nan=0.0)
    np.testing.assert_array_equal(ds.values[..., 0], expected)
    assert not ds.mask[7, 2] and ds.mask.sum() == STEPS * 4 - 1
    np.testing.assert_allclose(ds.adjacency, adj, atol=1e-6)


def test_npz_file_with_timestamps_and_edge_list(tmp_path, rng):
    data = rng.uniform(0.0, 5.0, size=(STEPS, 5))
    stamps = np.datetime64("2020-02-03T00:00") + np.arange(STEPS) * np.timedelta64(10, "m")
    np.savez(tmp_path / "speeds.npz", data=data, timestamps=stamps)
    pd.DataFrame({"from": [0, 1, 2, 3], "to": [1, 2, 3, 4], "cost": [100.0, 250.0, 80.0, 400.0]}
                 ).to_csv(tmp_path / "roads.csv", index=False)

    ds = load_path(tmp_path / "speeds.npz", adjacency=tmp_path / "roads.csv", units="km/h")

    assert ds.values.shape == (STEPS, 5, 1) and ds.units == "km/h" and ds.name == "speeds"
    np.testing.assert_array_equal(ds.values[..., 0], data.astype(np.float32))
    np.testing.assert_array_equal(ds.timestamps, stamps.astype("datetime64[ns]"))
    assert ds.interval_minutes == 10
    d = edges_to_distances(5, np.array([0, 1, 2, 3]), np.array([1, 2, 3, 4]),
                           np.array([100.0, 250.0, 80.0, 400.0]), symmetric=True)
    np.testing.assert_allclose(ds.adjacency, gaussian_kernel(d), atol=1e-6)
    assert ds.adjacency[0, 1] == ds.adjacency[1, 0] > 0.1


def test_csv_file_without_timestamps_uses_start_and_interval(tmp_path, rng):
    write_series_csv(tmp_path / "flow_week.csv", ["a", "b"], rng)
    np.save(tmp_path / "adj.npy", np.eye(2))

    default = load_path(tmp_path / "flow_week.csv")
    assert default.timestamps[0] == np.datetime64("2000-01-03T00:00")
    assert pd.Timestamp(default.timestamps[0]).day_of_week == 0  # a Monday
    assert default.interval_minutes == 5

    ds = load_path(tmp_path / "flow_week.csv", start="2019-06-01 12:00", interval_minutes=30)
    assert ds.timestamps[0] == np.datetime64("2019-06-01T12:00")
    assert (np.diff(ds.timestamps) == np.timedelta64(30, "m")).all()
    np.testing.assert_array_equal(ds.adjacency, np.eye(2))


def test_real_los_loop_folder_as_a_path(shared_data, los_loop):
    ds = load_path(shared_data / "los-loop", start="2012-03-01 00:00")
    assert ds.name == "los-loop"
    np.testing.assert_array_equal(ds.values, los_loop.values)
    np.testing.assert_array_equal(ds.adjacency, los_loop.adjacency)
    np.testing.assert_array_equal(ds.timestamps, los_loop.timestamps)


def test_dcrnn_folder_as_a_path(tmp_path, shared_data, metr_graph, rng):
    ids, w = metr_graph
    frame = write_dcrnn_h5(tmp_path / "city.h5", list(rng.permutation(ids)), "2012-03-01", rng)
    shutil.copy(shared_data / "metr-la-graph" / "adj_mx.pkl", tmp_path / "adj_mx.pkl")

    ds = load_path(tmp_path)

    assert ds.sensor_ids == ids
    np.testing.assert_array_equal(ds.values[..., 0],
                                  np.nan_to_num(frame[list(ids)].to_numpy(np.float32)))
    np.testing.assert_array_equal(ds.adjacency, w)


def test_manifest_names_files_and_settings(tmp_path, rng):
    data = rng.uniform(1.0, 9.0, size=(STEPS, 3, 2))
    data[10, 1, 0] = np.nan
    (tmp_path / "raw").mkdir()
    np.savez(tmp_path / "raw" / "readings.npz", values=data)
    np.save(tmp_path / "raw" / "graph.npy", np.ones((3, 3)))
    (tmp_path / "dataset.yaml").write_text(
        "series: raw/readings.npz\n"
        "adjacency: raw/graph.npy\n"
        "start: '2022-01-10 08:00'\n"
        "interval_minutes: 10\n"
        "null_value: -1\n"
        "units: km/h\n"
        "name: my-city\n"
    )

    ds = load_path(tmp_path)

    assert ds.name == "my-city" and ds.units == "km/h" and ds.null_value == -1.0
    assert ds.values.shape == (STEPS, 3, 2) and ds.values[10, 1, 0] == -1.0
    assert not ds.mask[10, 1] and ds.mask.sum() == STEPS * 3 - 1
    assert ds.timestamps[0] == np.datetime64("2022-01-10T08:00") and ds.interval_minutes == 10
    np.testing.assert_array_equal(ds.adjacency, np.ones((3, 3)))
    assert load_path(tmp_path, units="mph").units == "mph"  # options override the manifest


def test_dataset_argument_that_is_a_path_reaches_load_path(tmp_path, rng):
    write_series_csv(tmp_path / "data.csv", ["a", "b", "c"], rng)
    np.save(tmp_path / "adj.npy", np.eye(3))
    ds = load_dataset(str(tmp_path), options={"interval_minutes": 15})
    assert ds.num_nodes == 3 and ds.interval_minutes == 15


# --------------------------------------------------------------------------- bad inputs

Case = Callable[[Path], tuple[Callable[[], object], Path, str]]


def _csv_dataset(folder: Path, ids=("a", "b", "c")) -> Path:
    folder.mkdir(exist_ok=True)
    frame = pd.DataFrame(np.arange(STEPS * len(ids), dtype=float).reshape(STEPS, -1) + 1,
                         columns=list(ids))
    frame.to_csv(folder / "data.csv", index=False)
    return folder / "data.csv"


def _missing_named(tmp: Path):
    return lambda: load_dataset("metr-la", data_dir=tmp), tmp / "metr-la", \
        "needs metr-la.h5, adj_mx.pkl"


def _missing_one_pems_file(tmp: Path):
    (tmp / "pems04").mkdir()
    np.savez(tmp / "pems04" / "PEMS04.npz", data=np.ones((STEPS, 307, 3)))
    return lambda: load_dataset("pems04", data_dir=tmp), tmp / "pems04", "needs PEMS04.csv in"


def _corrupt_csv(tmp: Path):
    path = _csv_dataset(tmp)
    path.write_text("a,b\n1,2\n3,4,5,6\n" + "1,2\n" * 30)
    np.save(tmp / "adj.npy", np.eye(2))
    return lambda: load_path(tmp), path, "cannot read as CSV"


def _one_dimensional_npz(tmp: Path):
    np.savez(tmp / "series.npz", data=np.arange(100.0))
    np.save(tmp / "adj.npy", np.eye(1))
    return lambda: load_path(tmp), tmp / "series.npz", "[T, N] or [T, N, F]"


def _adjacency_size(tmp: Path):
    _csv_dataset(tmp)
    np.save(tmp / "adj.npy", np.eye(4))
    return lambda: load_path(tmp), tmp / "adj.npy", "adjacency is 4 x 4 but"


def _nan_in_adjacency(tmp: Path):
    _csv_dataset(tmp)
    (tmp / "adj.csv").write_text("1,0.5,0\n0.5,1,\n0,0,1\n")
    return lambda: load_path(tmp), tmp / "adj.csv", "every weight must be a number"


def _negative_adjacency(tmp: Path):
    _csv_dataset(tmp)
    (tmp / "adj.csv").write_text("1,0.5,0\n0.5,1,-2\n0,0,1\n")
    return lambda: load_path(tmp), tmp / "adj.csv", "negative weight -2"


def _not_square(tmp: Path):
    _csv_dataset(tmp)
    (tmp / "adj.csv").write_text("1,0,0,0,0\n0,1,0,0,0\n0,0,1,0,0\n")
    return lambda: load_path(tmp), tmp / "adj.csv", "neither a square matrix"


def _matrix_labels_partly_match(tmp: Path):
    _csv_dataset(tmp)
    pd.DataFrame(np.eye(3), columns=["a", "b", "x"]).to_csv(tmp / "adj.csv", index=False)
    return lambda: load_path(tmp), tmp / "adj.csv", "(missing c;"


def _pickle_wrong_structure(tmp: Path):
    _csv_dataset(tmp)
    with open(tmp / "adj_mx.pkl", "wb") as fh:
        pickle.dump({"sensor_ids": ["a", "b", "c"], "adj_mx": np.eye(3)}, fh)
    return lambda: load_path(tmp), tmp / "adj_mx.pkl", "expected DCRNN's [sensor_ids"


def _pickle_running_code(tmp: Path):
    _csv_dataset(tmp)

    class Payload:
        def __reduce__(self):
            return os.makedirs, (str(tmp / "pwned"),)

    with open(tmp / "adj_mx.pkl", "wb") as fh:
        pickle.dump([["a", "b", "c"], {}, Payload()], fh)

    def load():
        try:
            load_path(tmp)
        finally:
            assert not (tmp / "pwned").exists()

    return load, tmp / "adj_mx.pkl", "refusing to load"


def _non_numeric_cell(tmp: Path):
    path = _csv_dataset(tmp)
    frame = pd.read_csv(path)
    frame["b"] = frame["b"].astype(object)
    frame.loc[4, "b"] = "n/a?"
    frame.to_csv(path, index=False)
    np.save(tmp / "adj.npy", np.eye(3))
    return lambda: load_path(tmp), path, "non-numeric value 'n/a?' at line 6, column 'b'"


def _corrupt_h5(tmp: Path):
    (tmp / "metr-la").mkdir()
    (tmp / "metr-la" / "metr-la.h5").write_bytes(b"not an HDF5 file" * 8)
    (tmp / "metr-la" / "adj_mx.pkl").write_bytes(b"unused")
    return lambda: load_dataset("metr-la", data_dir=tmp), tmp / "metr-la" / "metr-la.h5", \
        "cannot read as pandas HDF"


def _corrupt_npz(tmp: Path):
    (tmp / "pems08").mkdir()
    (tmp / "pems08" / "PEMS08.npz").write_bytes(b"PK\x03\x04" + b"x" * 64)
    (tmp / "pems08" / "PEMS08.csv").write_text("from,to,cost\n0,1,5.0\n")
    return lambda: load_dataset("pems08", data_dir=tmp), tmp / "pems08" / "PEMS08.npz", \
        "cannot read as NPZ"


def _pems_feature_count(tmp: Path):
    (tmp / "pems04").mkdir()
    np.savez(tmp / "pems04" / "PEMS04.npz", data=np.ones((STEPS, 307)))
    (tmp / "pems04" / "PEMS04.csv").write_text("from,to,cost\n0,1,5.0\n")
    return lambda: load_dataset("pems04", data_dir=tmp), tmp / "pems04" / "PEMS04.npz", \
        "expected [T, N, 3]"


def _timestamps_backwards(tmp: Path):
    path = _csv_dataset(tmp)
    frame = pd.read_csv(path)
    stamps = pd.date_range("2020-01-01", periods=STEPS, freq="5min").strftime("%Y-%m-%d %H:%M")
    frame.insert(0, "time", stamps)
    frame.loc[[10, 11], "time"] = frame.loc[[11, 10], "time"].to_numpy()
    frame.to_csv(path, index=False)
    np.save(tmp / "adj.npy", np.eye(3))
    return lambda: load_path(tmp), path, "timestamps do not increase at row 12"


def _edge_list_unknown_node(tmp: Path):
    _csv_dataset(tmp)
    (tmp / "distances.csv").write_text("from,to,cost\n0,1,5.0\n1,99,7.5\n")
    return lambda: load_path(tmp), tmp / "distances.csv", "node(s) 99"


def _no_adjacency(tmp: Path):
    _csv_dataset(tmp)
    return lambda: load_path(tmp), tmp, "no adjacency file for data.csv (looked for *adj*.pkl"


def _two_series(tmp: Path):
    np.savez(tmp / "one.npz", data=np.ones((STEPS, 2)))
    np.savez(tmp / "two.npz", data=np.ones((STEPS, 2)))
    return lambda: load_path(tmp), tmp, "several files match *.npz (one.npz, two.npz)"


def _manifest_unknown_key(tmp: Path):
    _csv_dataset(tmp)
    (tmp / "dataset.yaml").write_text("series: data.csv\nadjacancy: adj.npy\n")
    return lambda: load_path(tmp), tmp / "dataset.yaml", "unknown option 'adjacancy'"


def _manifest_series_missing(tmp: Path):
    (tmp / "dataset.yaml").write_text("series: readings.npz\nadjacency: adj.npy\n")
    return lambda: load_path(tmp), tmp / "readings.npz", "file not found"


def _missing_path(tmp: Path):
    return lambda: load_path(tmp / "nowhere"), tmp / "nowhere", "no such file or folder"


def _unknown_option(tmp: Path):
    _csv_dataset(tmp)
    return lambda: load_path(tmp, interval=5), tmp, "unknown option 'interval'"


BAD_INPUTS: dict[str, Case] = {
    "missing named files": _missing_named,
    "missing one pems file": _missing_one_pems_file,
    "corrupt csv": _corrupt_csv,
    "1-d npz": _one_dimensional_npz,
    "adjacency size": _adjacency_size,
    "nan in adjacency": _nan_in_adjacency,
    "negative adjacency": _negative_adjacency,
    "adjacency not square": _not_square,
    "matrix labels partly match": _matrix_labels_partly_match,
    "pickle wrong structure": _pickle_wrong_structure,
    "pickle running code": _pickle_running_code,
    "non-numeric cell": _non_numeric_cell,
    "corrupt h5": _corrupt_h5,
    "corrupt npz": _corrupt_npz,
    "pems feature count": _pems_feature_count,
    "timestamps backwards": _timestamps_backwards,
    "edge list unknown node": _edge_list_unknown_node,
    "no adjacency": _no_adjacency,
    "two series": _two_series,
    "manifest unknown key": _manifest_unknown_key,
    "manifest series missing": _manifest_series_missing,
    "missing path": _missing_path,
    "unknown option": _unknown_option,
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_inputs_raise_one_line_data_errors(tmp_path, case):
    load, path, phrase = BAD_INPUTS[case](tmp_path)
    with pytest.raises(DataError) as err:
        load()
    message = str(err.value)
    assert str(path) in message
    assert phrase in message
    assert "\n" not in message


def test_missing_named_files_say_where_to_get_them(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("pems-bay", data_dir=tmp_path)
    message = str(err.value)
    for part in ("pems-bay.h5", "adj_mx_bay.pkl", str(tmp_path / "pems-bay"),
                 "https://github.com/liyaguang/DCRNN"):
        assert part in message

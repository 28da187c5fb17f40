"""Bad input ends in exit code 2 and one line naming the file, key or value, never a traceback."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.config import ConfigError, from_dict
from bench.profile import Profile, validate_components

GOOD = """
description: ok
dataset: {name: synthetic-la, options: {nodes: 12, days: 3}}
model: {name: stid}
budgets: [6]
seeds: [0]
schedules: constant
device: cpu
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run_args(tmp_path, *extra, profile_text=GOOD):
    return ["run", "--profile", write(tmp_path, "p.yaml", profile_text), "--results",
            str(tmp_path / "r"), *extra]


def bad_series_folder(tmp_path: Path, kind: str) -> str:
    folder = tmp_path / f"data_{kind}"
    folder.mkdir()
    n = 4
    steps = 100 if kind == "short" else 200  # 100 steps leave 10 for validation: no window
    series = np.random.default_rng(0).uniform(30, 60, size=(steps, n)).astype(np.float32)
    adj = np.eye(n, dtype=np.float32)
    if kind == "shape":
        np.savez(folder / "data.npz", data=series[:, 0])
    else:
        np.savez(folder / "data.npz", data=series)
    if kind == "nan_adj":
        adj[0, 1] = np.nan
    if kind == "size":
        adj = np.eye(n + 1, dtype=np.float32)
    np.save(folder / "adj.npy", adj)
    return str(folder)


CASES = {
    "malformed yaml": (lambda t: run_args(t, profile_text="budgets: [1, 2\n"),
                       "malformed YAML at line"),
    "unknown key": (lambda t: run_args(t, profile_text=GOOD + "budgetz: [3]\n"),
                    "budgetz: unknown key (did you mean 'budgets'?)"),
    "unknown nested key": (lambda t: run_args(t, profile_text=GOOD + "train: {batch_sise: 8}\n"),
                           "train.batch_sise: unknown key"),
    "wrong type list": (lambda t: run_args(t, profile_text=GOOD.replace("budgets: [6]",
                                                                        "budgets: six")),
                        "budgets: expected a list of integers"),
    "wrong type int": (lambda t: run_args(t, profile_text=GOOD + "train: {batch_size: big}\n"),
                       "train.batch_size: expected an integer"),
    "unknown model option": (lambda t: run_args(t, profile_text=GOOD.replace(
        "model: {name: stid}", "model: {name: stid, options: {dropuot: 0.1}}")),
        "model 'stid': unknown option 'dropuot' (did you mean 'dropout'?)"),
    "dataset option type": (lambda t: run_args(t, profile_text=GOOD.replace(
        "nodes: 12", "nodes: many")), "dataset.options.nodes: expected an integer"),
    "unknown schedule": (lambda t: run_args(t, "--schedules", "plateu"),
                         "did you mean 'plateau'"),
    "unknown model": (lambda t: run_args(t, "--model", "stdi"), "did you mean 'stid'"),
    "unknown dataset": (lambda t: run_args(t, "--dataset", "metr_la"),
                        "did you mean 'metr-la'"),
    "unknown profile": (lambda t: ["run", "--profile", "quik"], "did you mean 'quick'"),
    "milestones not increasing": (lambda t: run_args(
        t, "--schedule-file", write(t, "s.yaml", "m:\n  kind: multistep\n  lr: 1e-3\n"
                                                 "  milestones: [4, 2]\n"), "--schedules", "m"),
        "strictly increasing"),
    "milestones outside budget": (lambda t: run_args(
        t, "--schedule-file", write(t, "s.yaml", "m:\n  kind: multistep\n  lr: 1e-3\n"
                                                 "  milestones: [50]\n"), "--schedules", "m"),
        "beyond the longest budget"),
    "unknown kind": (lambda t: run_args(
        t, "--schedule-file", write(t, "s.yaml", "m:\n  kind: cosin\n  lr: 1e-3\n")),
        "unknown kind 'cosin'"),
    "lr out of range": (lambda t: run_args(
        t, "--schedule-file", write(t, "s.yaml", "m:\n  kind: constant\n  lr: -1\n")),
        "lr must be in (0, 10]"),
    "weight decay out of range": (lambda t: run_args(
        t, "--schedule-file", write(t, "s.yaml", "m:\n  kind: constant\n  lr: 1e-3\n"
                                                 "  weight_decay: 2\n")),
        "weight_decay must be in [0, 1)"),
    "note config unknown key": (lambda t: run_args(
        t, "--config", write(t, "note.yaml", "lr: 0.001\nschedular: step\n")),
        "schedular: unknown key"),
    "budget out of range": (lambda t: run_args(t, "--budgets", "0"), "budget 0 out of range"),
    "budgets not numbers": (lambda t: run_args(t, "--budgets", "30,x"),
                            "--budgets: expected integers"),
    "batch size out of range": (lambda t: run_args(t, "--batch-size", "0"),
                                "batch sizes must be in [1, 65536]"),
    "seed out of range": (lambda t: run_args(t, "--seeds=-1"), "seed -1 out of range"),
    "jobs out of range": (lambda t: run_args(t, "--jobs", "0"), "--jobs must be >= 1"),
    "bad shard": (lambda t: run_args(t, "--shard", "3/2"), "--shard 3/2"),
    "dataset path missing": (lambda t: run_args(t, "--dataset", str(t / "nope" / "data.csv")),
                             "nope"),
    "dataset wrong shape": (lambda t: run_args(t, "--dataset", bad_series_folder(t, "shape")),
                            "data.npz"),
    "adjacency with NaN": (lambda t: run_args(t, "--dataset", bad_series_folder(t, "nan_adj")),
                           "adj.npy"),
    "adjacency size mismatch": (lambda t: run_args(t, "--dataset", bad_series_folder(t, "size")),
                                "adj"),
    "real dataset absent": (lambda t: run_args(t, "--dataset", "metr-la", "--data-dir", str(t)),
                            "metr-la.h5"),
    "bad device in profile": (lambda t: run_args(t, profile_text=GOOD.replace("device: cpu",
                                                                              "device: gpu")),
                              "device must be auto, cpu, cuda or cuda:N"),
    "split too short": (lambda t: run_args(t, "--dataset", bad_series_folder(t, "short")),
                        "fewer than one window"),
    "report of missing experiment": (lambda t: ["report", "--results", str(t), "--experiment",
                                                "nothing"], "no such experiment folder"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_clear_line(case, tmp_path, capsys):
    make_args, fragment = CASES[case]
    code = main(make_args(tmp_path))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert fragment in lines[0], err


@pytest.fixture(scope="module")
def finished_experiment(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("done")
    profile = root / "p.yaml"
    profile.write_text(GOOD.replace("schedules: constant", "schedules: constant,plateau"))
    assert main(["run", "--profile", str(profile), "--results", str(root / "r")]) == 0
    return root / "r"


@pytest.mark.parametrize("text,fragment", [
    ("schedule,budget\nconstant,6\n", "missing column(s) seeds, test_mae"),
    ("schedule,budget,seeds,test_mae\nconstant,6,1,abc\n", "non-numeric"),
    ("schedule,budget,seeds,test_mae\n", "holds no rows"),
    ("schedule,budget,seeds,test_mae\nconstant,6,1,-3\n", "must be positive"),
    ("schedule,budget,seeds,test_mae\nconstant,6,1,3.0\nconstant,6,1,3.0\n", "appears twice"),
    ("schedule,budget,seeds,test_mae\nmultistep,6,1,3.0\n", "different grid"),
    ("schedule,budget,seeds,test_mae\nconstant,30,1,3.0\n", "different grid"),
    ("schedule,budget,seeds,test_mae\nconstant,6,3,3.0\n", "seed counts differ"),
    ("schedule,budget,seeds,test_mae,test_mae_std\nconstant,6,1,3.0,-1\n", "test_mae_std"),
    ("schedule,budget,seeds,test_mae,test_mae_std\nconstant,6,1,3.0,x\n", "test_mae_std"),
])
def test_bad_baseline_exits_2(finished_experiment, tmp_path, capsys, text, fragment):
    baseline = write(tmp_path, "b.csv", text)
    code = main(["check", "--results", str(finished_experiment), "--experiment", "p",
                 "--baseline", baseline])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and "Traceback" not in err


# -- generated configs ---------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["1e-3", "stid", "synthetic-la", "all",
                                                          "cpu", "gwnet", "seed"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6),
                                                                       inner, max_size=4)),
                      max_leaves=10)
keys = st.sampled_from(["description", "dataset", "model", "train", "schedules", "budgets",
                        "seeds", "device", "name", "options", "batch_size", "grad_clip",
                        "nodes", "bogus"])
sections = st.fixed_dictionaries({}, optional={
    "dataset": st.dictionaries(st.sampled_from(["name", "options", "data_dir",
                                                "train_fraction", "val_fraction", "input_len",
                                                "bogus"]), values, max_size=4),
    "model": st.dictionaries(st.sampled_from(["name", "options", "bogus"]), values, max_size=3),
    "train": st.dictionaries(st.sampled_from(["batch_size", "eval_batch_size", "grad_clip",
                                              "divergence_factor", "autocast"]), values,
                             max_size=3),
    "budgets": st.one_of(values, st.lists(st.integers(-3, 20_000), max_size=4)),
    "seeds": st.one_of(values, st.lists(st.integers(-3, 5), max_size=4)),
})
configs = st.one_of(values, st.dictionaries(keys, values, max_size=6), sections)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_generated_configs_raise_only_the_suites_own_error(data):
    try:
        profile = from_dict(Profile, data, "generated.yaml")
        validate_components(profile, "generated.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("generated.yaml: "), str(exc)


def test_numbers_written_as_strings_are_converted_not_crashed(tmp_path):
    # YAML 1.1 reads 1e-1 as a string; the options must reach the model and data as numbers.
    text = GOOD.replace("model: {name: stid}", "model: {name: stid, options: {dropout: 1e-1}}")
    text = text.replace("{nodes: 12, days: 3}", "{nodes: 12, days: 3, missing_share: 5e-2}")
    assert main(run_args(tmp_path, profile_text=text)) == 0
    config = next((tmp_path / "r/p/runs").glob("*/*/config.json")).read_text()
    assert '"dropout": 0.1' in config and '"missing_share": 0.05' in config

"""A user's own data through ``bench run`` and ``bench report``: the missing-value marker
stated, never guessed silently; the data part of the experiment's identity; labels in the
data's own time step and units; no machine paths in the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli import main
from stforecast.datasets import DataError, load_dataset
from stforecast.datasets.loaders import load_path
from stforecast.metrics import masked_mae

NODES, DAYS = 6, 30


def write_hourly_counts(folder: Path, null_value: str | None = "none", zero_share: float = 0.8,
                        seed: int = 0) -> Path:
    """Hourly counts at a few locations where most values are genuine zeros."""
    rng = np.random.default_rng(seed)
    steps = 24 * DAYS
    hour = np.arange(steps) % 24
    rate = 3 + 2 * np.sin(2 * np.pi * hour / 24)[:, None] + rng.random(NODES)
    counts = rng.poisson(rate) * (rng.random((steps, NODES)) > zero_share)
    stamps = pd.date_range("2021-03-01 00:00", periods=steps, freq="h")
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(counts, columns=[f"loc{i}" for i in range(NODES)])
    frame.insert(0, "time", stamps.strftime("%Y-%m-%d %H:%M"))
    frame.to_csv(folder / "counts.csv", index=False)
    adj = (rng.random((NODES, NODES)) > 0.5).astype(np.float32)
    np.save(folder / "graph.npy", adj)
    manifest = ["series: counts.csv", "adjacency: graph.npy", "units: vehicles/h",
                "name: hourly-counts"]
    if null_value is not None:
        manifest.append(f"null_value: {null_value}")
    (folder / "dataset.yaml").write_text("\n".join(manifest) + "\n")
    return folder


def profile_for(tmp_path: Path, data: Path, seeds: str = "[0]") -> Path:
    path = tmp_path / "own.yaml"
    path.write_text(f"""
dataset: {{name: {data}}}
model: {{name: stid, options: {{embed_dim: 8, node_dim: 4, tod_dim: 4, dow_dim: 4,
                                num_layers: 1, dropout: 0.0}}}}
schedules: constant
budgets: [2]
seeds: {seeds}
device: cpu
jobs: 1
threads: 1
""")
    return path


@pytest.mark.parametrize("text", ["none", "None", "null", ".nan", "NaN"])
def test_null_value_none_keeps_zeros_as_values(tmp_path, text):
    folder = write_hourly_counts(tmp_path / "d", null_value=text)
    ds = load_path(folder)
    assert np.isnan(ds.null_value) and ds.null_text == "none"
    assert ds.missing_share == 0.0  # zeros are values
    assert (ds.values == 0).mean() > 0.7


def test_default_marker_hides_the_zeros(tmp_path):
    ds = load_path(write_hourly_counts(tmp_path / "d", null_value=None))
    assert ds.null_value == 0.0 and ds.missing_share > 0.7
    assert ds.meta["null_value_stated"] is False


def test_a_nan_marker_scores_zero_targets_and_keeps_gradients_finite():
    target = torch.tensor([0.0, 0.0, float("nan"), 2.0])
    pred = torch.tensor([1.0, 0.5, 3.0, 2.0], requires_grad=True)
    loss = masked_mae(pred, target, float("nan"))
    assert loss.item() == pytest.approx((1.0 + 0.5 + 0.0) / 3)  # NaN cell left out only
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[2] == 0
    assert masked_mae(pred, target, 0.0).item() == pytest.approx(0.0)  # zeros as missing


def test_run_states_the_data_and_warns_about_a_hiding_marker(tmp_path, capsys):
    folder = write_hourly_counts(tmp_path / "d", null_value=None)
    code = main(["run", "--profile", str(profile_for(tmp_path, folder)), "--results",
                 str(tmp_path / "r")])
    assert code == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("data: "))
    assert "hourly-counts, 6 nodes x 720 steps of 60 min" in line and "vehicles/h" in line
    assert "(marker 0)" in line
    warning = next(x for x in err.splitlines() if x.startswith("warning: "))
    share = float(warning.split(" hides ")[1].split(" %")[0])
    assert 75 < share < 85 and "null_value: none" in warning


def test_null_value_none_runs_without_a_warning(tmp_path, capsys):
    folder = write_hourly_counts(tmp_path / "d", null_value="none")
    assert main(["run", "--profile", str(profile_for(tmp_path, folder)), "--results",
                 str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "warning:" not in err
    assert "(marker none): train 0.0 %, val 0.0 %, test 0.0 %" in err


def test_editing_the_manifest_redoes_the_runs_and_the_baselines(tmp_path, capsys):
    folder = write_hourly_counts(tmp_path / "d", null_value=None)
    args = ["run", "--profile", str(profile_for(tmp_path, folder)), "--results",
            str(tmp_path / "r")]
    exp = tmp_path / "r" / "own"
    assert main(args) == 0
    before = (exp / "baselines.csv").read_text(), (exp / "epochs.csv").read_text()
    capsys.readouterr()
    assert main(args) == 0
    assert "1 skipped" in capsys.readouterr().err  # nothing changed, nothing redone
    (folder / "dataset.yaml").write_text((folder / "dataset.yaml").read_text()
                                         + "null_value: none\n")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "dataset.content.null_value 0 → none" in err and "stale" in err
    assert "baselines.csv recomputed" in err and "1 finished" in err
    after = (exp / "baselines.csv").read_text(), (exp / "epochs.csv").read_text()
    assert after[0] != before[0] and after[1] != before[1]
    record = json.loads((exp / "experiment.json").read_text())
    assert record["dataset"]["content"]["null_value"] == "none"
    assert record["data"]["splits"]["train"]["missing_share"] == 0.0


def test_editing_a_data_cell_makes_the_runs_stale(tmp_path, capsys):
    folder = write_hourly_counts(tmp_path / "d")
    args = ["run", "--profile", str(profile_for(tmp_path, folder)), "--results",
            str(tmp_path / "r")]
    assert main(args) == 0
    frame = pd.read_csv(folder / "counts.csv")
    frame.iloc[5, 2] += 1
    frame.to_csv(folder / "counts.csv", index=False)
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "dataset.content.sha256" in err and "1 finished" in err


def test_hourly_report_labels_time_and_names_no_machine_path(tmp_path, monkeypatch):
    folder = write_hourly_counts(tmp_path / "d")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--profile", str(profile_for(tmp_path, folder)), "--results",
                 "results"]) == 0
    assert main(["report", "--results", "results", "--experiment", "own", "--out",
                 "reports"]) == 0
    text = (tmp_path / "reports/own/report.md").read_text()
    assert "@3 = 3 h, @6 = 6 h, @12 = 12 h ahead at hourly data" in text
    assert "MAE@3 (3 h)" in text and "in vehicles/h" in text
    assert "# Learning-rate schedules: stid on hourly-counts" in text
    assert "720 steps of 60 min" in text and "Missing-value marker none" in text
    assert str(tmp_path) not in text and "/tmp" not in text
    regenerate = text.split("Regenerate with `")[1].split("`")[0]
    assert regenerate == ("python -m bench report --results results --experiment own "
                          "--out reports")
    # the printed command writes the same report again
    (tmp_path / "reports/own/report.md").unlink()
    assert main(regenerate.split()[3:]) == 0
    assert (tmp_path / "reports/own/report.md").read_text() == text


def test_one_seed_shows_no_spread_and_no_interval(tmp_path, monkeypatch):
    folder = write_hourly_counts(tmp_path / "d")
    monkeypatch.chdir(tmp_path)
    prof = profile_for(tmp_path, folder)
    prof.write_text(prof.read_text().replace("schedules: constant",
                                             "schedules: plateau,constant"))
    assert main(["run", "--profile", str(prof), "--results", "results"]) == 0
    assert main(["report", "--results", "results", "--experiment", "own"]) == 0
    text = (tmp_path / "reports/own/report.md").read_text()
    assert "**One seed**" in text and "± " not in text
    assert "[" not in text.split("## Against the reference")[1].split("##")[0] \
        .replace("[B", "")  # no interval brackets in the comparison table


def test_the_baselines_verdict_says_when_nothing_beats_them(tmp_path, monkeypatch):
    """With a two-epoch budget nothing learns the hourly counts: the report says so first."""
    folder = write_hourly_counts(tmp_path / "d", null_value="none", zero_share=0.0)
    monkeypatch.chdir(tmp_path)
    prof = profile_for(tmp_path, folder)
    prof.write_text(prof.read_text().replace("budgets: [2]", "budgets: [1]"))
    assert main(["run", "--profile", str(prof), "--results", "results"]) == 0
    assert main(["report", "--results", "results", "--experiment", "own"]) == 0
    text = (tmp_path / "reports/own/report.md").read_text()
    verdict = text.split("## Answer")[1].split("##")[0]
    assert "no trained schedule beats" in verdict or "beats the historical average" in verdict
    summary = pd.read_csv(tmp_path / "results/own/summary.csv")
    base = pd.read_csv(tmp_path / "results/own/baselines.csv")
    ha = base[(base.baseline == "historical_average") & (base.split == "test")]["mae"].iloc[0]
    loses = summary["test_mae"].min() >= ha
    assert ("no trained schedule beats the historical average" in verdict) == loses


def test_an_absurd_value_is_a_data_error_naming_the_cell(tmp_path):
    folder = write_hourly_counts(tmp_path / "d")
    frame = pd.read_csv(folder / "counts.csv")
    frame["loc2"] = frame["loc2"].astype(float)
    frame.iloc[9, 3] = 1e30
    frame.to_csv(folder / "counts.csv", index=False)
    with pytest.raises(DataError, match=r"value 1e\+30 at step 10 \(row\), sensor loc2"):
        load_path(folder)


def test_sz_taxi_is_a_named_dataset(shared_data):
    ds = load_dataset("sz-taxi", shared_data)
    assert (ds.num_steps, ds.num_nodes, ds.interval_minutes) == (2976, 156, 15)
    assert ds.units == "km/h" and ds.null_value == 0.0
    assert ds.missing_share == pytest.approx(0.248, abs=0.002)
    assert str(ds.timestamps[0]).startswith("2015-01-01T00:00")
    assert ds.adjacency.shape == (156, 156) and not np.array_equal(ds.adjacency,
                                                                   ds.adjacency.T)


def test_sz_taxi_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match="sz_speed.npz"):
        load_dataset("sz-taxi", tmp_path)


def test_runs_of_other_data_are_left_out_until_redone(tmp_path, capsys):
    """Only seed 0 is rerun after the data changed: seed 1's old numbers must not be
    tabulated beside the new ones."""
    folder = write_hourly_counts(tmp_path / "d")
    prof = profile_for(tmp_path, folder, seeds="[0, 1]")
    args = ["run", "--profile", str(prof), "--results", str(tmp_path / "r")]
    assert main(args) == 0
    frame = pd.read_csv(folder / "counts.csv")
    frame.iloc[5, 2] += 1
    frame.to_csv(folder / "counts.csv", index=False)
    capsys.readouterr()
    assert main([*args, "--seeds", "0-0"]) == 0
    err = capsys.readouterr().err
    assert "constant/seed1: stale" in err and "dataset.content.sha256" in err
    summary = pd.read_csv(tmp_path / "r/own/summary.csv")
    assert list(summary.sort_values("seed")["status"]) == ["finished", "missing"]


def test_baselines_follow_the_data_even_without_the_experiment_record(tmp_path, capsys):
    folder = write_hourly_counts(tmp_path / "d")
    args = ["run", "--profile", str(profile_for(tmp_path, folder)), "--results",
            str(tmp_path / "r")]
    assert main(args) == 0
    exp = tmp_path / "r/own"
    before = (exp / "baselines.csv").read_text()
    frame = pd.read_csv(folder / "counts.csv")
    frame.iloc[:, 1:] += 1
    frame.to_csv(folder / "counts.csv", index=False)
    (exp / "experiment.json").unlink()  # as if a run stopped between the two writes
    capsys.readouterr()
    assert main(args) == 0
    assert "baselines.csv recomputed" in capsys.readouterr().err
    assert (exp / "baselines.csv").read_text() != before


def test_a_split_with_nothing_observed_is_a_data_error(tmp_path):
    folder = write_hourly_counts(tmp_path / "d", null_value=None)
    frame = pd.read_csv(folder / "counts.csv")
    frame.iloc[-200:, 1:] = 0  # the whole test part equals the marker
    frame.to_csv(folder / "counts.csv", index=False)
    from stforecast.windows import WindowedData

    with pytest.raises(DataError, match="split 'test'.*holds no observed target"):
        WindowedData(load_path(folder))


@pytest.mark.parametrize("damage", ["experiment", "grid", "baselines"])
def test_edited_side_files_end_in_one_line(tmp_path, capsys, damage):
    folder = write_hourly_counts(tmp_path / "d")
    assert main(["run", "--profile", str(profile_for(tmp_path, folder)), "--results",
                 str(tmp_path / "r")]) == 0
    exp = tmp_path / "r/own"
    if damage == "experiment":
        (exp / "experiment.json").write_text("[]")
    elif damage == "grid":
        grid = json.loads((exp / "grid.json").read_text())
        grid["cells"].append(["nonesuch", 2, 0])
        (exp / "grid.json").write_text(json.dumps(grid))
    else:
        text = (exp / "baselines.csv").read_text().splitlines()
        row = text[1].split(",")
        row[3] = "oops"
        (exp / "baselines.csv").write_text("\n".join([text[0], ",".join(row), *text[2:]]))
    capsys.readouterr()
    assert main(["report", "--results", str(tmp_path / "r"), "--experiment", "own",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len([x for x in err.splitlines()
                                           if x.startswith("error:")]) == 1

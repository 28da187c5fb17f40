"""``python -m bench run`` end to end on tiny data: tables, prefix reuse, skip and resume."""

import csv
import json
from pathlib import Path

import pytest

from bench.cli import main

TINY = """
description: tiny test profile
dataset: {name: synthetic-la, options: {nodes: 12, days: 3, seed: 0}}
model: {name: stid, options: {embed_dim: 8, node_dim: 4, tod_dim: 4, dow_dim: 4, num_layers: 1}}
train: {batch_size: 64}
schedules: seed
budgets: [6, 8]
seeds: [0, 1]
device: cpu
"""


@pytest.fixture
def profile(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def read(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def metrics_only(rows):
    return [{k: v for k, v in r.items() if "seconds" not in k and k != "budget"} for r in rows]


def run(profile, results, *extra) -> int:
    return main(["run", "--profile", str(profile), "--results", str(results), *extra])


def test_grid_writes_the_contracted_tables(profile, tmp_path):
    assert run(profile, tmp_path / "r") == 0
    exp = tmp_path / "r" / "tiny"
    epochs = read(exp / "epochs.csv")
    summary = read(exp / "summary.csv")
    for col in ("schedule", "budget", "seed", "epoch", "lr", "train_loss", "val_mae",
                "test_mae", "seconds"):
        assert col in epochs[0]
    # one row per (schedule, budget, seed, epoch) and per (schedule, budget, seed)
    assert len(epochs) == 3 * 2 * (6 + 8)
    assert len(summary) == 3 * 2 * 2
    assert {r["status"] for r in summary} == {"finished"}
    for col in ("test_mae", "test_mae_h3", "test_mae_h6", "test_mae_h12", "best_epoch",
                "best_test_mae", "best_test_mae_h12"):
        assert summary[0][col] != ""
    # warmup_cosine is budget-dependent: one run per budget; the others share a prefix.
    runs = sorted(p.parent.name + "/" + p.name for p in (exp / "runs").glob("*/*"))
    assert runs == ["multistep/seed0", "multistep/seed1", "plateau/seed0", "plateau/seed1",
                    "warmup_cosine/e6-seed0", "warmup_cosine/e6-seed1",
                    "warmup_cosine/e8-seed0", "warmup_cosine/e8-seed1"]
    config = json.loads((exp / "runs/plateau/seed0/config.json").read_text())
    assert config["environment"]["torch"] and config["config"]["seed"] == 0
    assert {r["baseline"] for r in read(exp / "baselines.csv")} == {"historical_average",
                                                                    "persistence"}


def test_prefix_of_a_long_run_equals_a_standalone_short_run(profile, tmp_path):
    assert run(profile, tmp_path / "long", "--schedules", "plateau,multistep", "--seeds", "1") == 0
    assert run(profile, tmp_path / "short", "--schedules", "plateau,multistep", "--seeds", "1",
               "--budgets", "6") == 0
    long_rows = [r for r in read(tmp_path / "long/tiny/epochs.csv") if r["budget"] == "6"]
    short_rows = read(tmp_path / "short/tiny/epochs.csv")
    assert len(short_rows) == 12
    assert metrics_only(long_rows) == metrics_only(short_rows)


def test_rerun_skips_finished_runs_and_extends_shared_prefix(profile, tmp_path, capsys):
    assert run(profile, tmp_path / "r", "--schedules", "plateau", "--seeds", "1",
               "--budgets", "6") == 0
    first = read(tmp_path / "r/tiny/epochs.csv")
    first_seconds = [r["seconds"] for r in read(tmp_path / "r/tiny/runs/plateau/seed0/records.csv")]
    capsys.readouterr()
    assert run(profile, tmp_path / "r", "--schedules", "plateau", "--seeds", "1",
               "--budgets", "6") == 0
    assert "1 skipped" in capsys.readouterr().err
    # A longer budget continues the same run from its checkpoint instead of starting over.
    assert run(profile, tmp_path / "r", "--schedules", "plateau", "--seeds", "1",
               "--budgets", "6,8") == 0
    err = capsys.readouterr().err
    assert "finished  plateau/seed0: 8 epochs" in err
    # The first 6 epochs were resumed, not retrained: their recorded timings are the old ones.
    extended = read(tmp_path / "r/tiny/runs/plateau/seed0/records.csv")
    assert [r["seconds"] for r in extended[:6]] == first_seconds
    rows = read(tmp_path / "r/tiny/epochs.csv")
    assert metrics_only([r for r in rows if r["budget"] == "6"]) == metrics_only(first)
    straight = tmp_path / "straight"
    assert run(profile, straight, "--schedules", "plateau", "--seeds", "1",
               "--budgets", "6,8") == 0
    assert metrics_only(read(straight / "tiny/epochs.csv")) == metrics_only(rows)


def test_note_config_runs_as_given(profile, tmp_path, capsys):
    note = tmp_path / "METR-LA_alternating.yaml"
    note.write_text("lr: 0.001\nweight_decay: 0.0005\nmilestones: [2, 4]\nlr_decay_rate: 0.1\n"
                    "epochs: 5\nbatch_size: 32\n")
    assert run(profile, tmp_path / "r", "--config", str(note), "--seeds", "1") == 0
    rows = read(tmp_path / "r/tiny/epochs.csv")
    assert {r["schedule"] for r in rows} == {"METR-LA_alternating"}
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5])
    config = json.loads((tmp_path / "r/tiny/runs/METR-LA_alternating/seed0/config.json")
                        .read_text())
    assert config["config"]["train"]["batch_size"] == 32


def test_schedule_file_adds_a_schedule(profile, tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("my_cosine:\n  kind: warmup_cosine\n  lr: 2e-3\n  warmup_epochs: 1\n")
    assert run(profile, tmp_path / "r", "--schedule-file", str(f), "--schedules", "my_cosine",
               "--seeds", "1", "--budgets", "6") == 0
    rows = read(tmp_path / "r/tiny/epochs.csv")
    assert float(rows[1]["lr"]) == pytest.approx(2e-3)


def test_experiment_folder_refuses_other_model_settings(profile, tmp_path, capsys):
    assert run(profile, tmp_path / "r", "--schedules", "plateau", "--seeds", "1",
               "--budgets", "6") == 0
    code = run(profile, tmp_path / "r", "--schedules", "plateau", "--seeds", "1",
               "--budgets", "3", "--model", "stgcn", "--experiment", "tiny")
    assert code == 2
    assert "--experiment" in capsys.readouterr().err
    # without --experiment another model gets its own folder
    assert run(profile, tmp_path / "r", "--schedules", "plateau", "--seeds", "1",
               "--budgets", "3", "--model", "stgcn") == 0
    assert (tmp_path / "r/tiny-stgcn/summary.csv").exists()


def test_list_names_every_component(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("plateau", "multistep", "warmup_cosine", "schedulefree", "stid", "gwnet",
                 "stgcn", "synthetic-la", "los-loop", "metr-la", "quick", "default"):
        assert name in out


def test_epochs_csv_shows_each_schedules_lr_path(profile, tmp_path):
    assert run(profile, tmp_path / "r", "--seeds", "1") == 0
    rows = read(tmp_path / "r/tiny/epochs.csv")
    for budget in (6, 8):
        wc = [r for r in rows if r["schedule"] == "warmup_cosine" and r["budget"] == str(budget)]
        lrs = [float(r["lr"]) for r in wc]
        assert lrs[0] == pytest.approx(1e-5)
        assert all(a < b for a, b in zip(lrs[:5], lrs[1:6]))  # rises over the 5-epoch warmup
        assert lrs[5] == pytest.approx(1e-3)
        assert float(wc[-1]["lr_end"]) == pytest.approx(1e-5)  # floor at the budget's last step
        ms = [float(r["lr"]) for r in rows
              if r["schedule"] == "multistep" and r["budget"] == str(budget)]
        assert ms == [1e-3] * budget  # milestones at 30/60/90 lie outside these budgets

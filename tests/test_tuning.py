"""The tuning protocol: settings chosen on validation from the tuning seeds; the test
comparison made on the evaluation seeds alone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.report.results import load_results

PROFILE = """
dataset: {name: synthetic-la, options: {nodes: 8, days: 3, seed: 0}}
model: {name: stid, options: {embed_dim: 8, node_dim: 4, tod_dim: 4, dow_dim: 4, num_layers: 1,
                             dropout: 0.0}}
schedules: constant,onecycle
budgets: [3, 4]
seeds: [0, 1]
device: cpu
jobs: 1
threads: 1
tune: {lr: [1.0e-4, 3.0e-3], tuning_seeds: [100, 101], extend: false}
"""


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tuned")
    profile = tmp / "tiny.yaml"
    profile.write_text(PROFILE)
    assert main(["run", "--profile", str(profile), "--results", str(tmp / "results")]) == 0
    assert main(["report", "--results", str(tmp / "results"), "--experiment", "tiny",
                 "--out", str(tmp / "reports")]) == 0
    return tmp


def test_the_setting_is_chosen_on_validation_from_the_tuning_seeds(tuned):
    exp = tuned / "results/tiny"
    record = json.loads((exp / "tuning.json").read_text())
    summary = pd.read_csv(exp / "summary.csv")
    tuning = summary[summary.seed.isin([100, 101])]
    for base in ("constant", "onecycle"):
        for budget in (3, 4):
            points = [n for n in record["settings"] if n == base or n.startswith(base + "@")]
            assert len(points) == 2  # one per lr of the space
            val = {n: tuning[(tuning.schedule == n) & (tuning.budget == budget)]["val_mae"]
                   for n in points}
            assert all(len(v) == 2 for v in val.values())  # both tuning seeds, every point
            expected = min(points, key=lambda n: val[n].mean())
            got = record["schedules"][base][str(budget)]
            assert got["chosen"] == expected
            assert got["val_mae"][expected] == pytest.approx(val[expected].mean())


def test_only_evaluation_seeds_judge(tuned):
    exp = tuned / "results/tiny"
    record = json.loads((exp / "tuning.json").read_text())
    summary = pd.read_csv(exp / "summary.csv")
    evaluation = summary[summary.seed.isin([0, 1])]
    chosen = {(c["chosen"], int(b)) for per in record["schedules"].values()
              for b, c in per.items()}
    for (name, budget), rows in evaluation.groupby(["schedule", "budget"]):
        # on evaluation seeds: the chosen points and the schedules' own settings only
        assert (name, budget) in chosen or name in ("constant", "onecycle")
        assert sorted(rows.seed) == [0, 1]
    res = load_results(exp)
    assert res.seeds == [0, 1]  # tuning seeds never reach a test number
    assert set(res.schedule_order) == {"constant", "onecycle"}
    text = (tuned / "reports/tiny/report.md").read_text()
    section = text.split("## Each schedule tuned")[1].split("\n## ")[0]
    for base in ("constant", "onecycle"):
        name = record["schedules"][base]["4"]["chosen"]
        mean = evaluation[(evaluation.schedule == name) & (evaluation.budget == 4)]["test_mae"]
        assert f"{mean.mean():.3f}" in section
    assert (tuned / "reports/tiny/lr_sensitivity.png").exists()


def test_tuning_and_evaluation_seeds_must_not_overlap(tmp_path, capsys):
    profile = tmp_path / "bad.yaml"
    profile.write_text(PROFILE.replace("tuning_seeds: [100, 101]", "tuning_seeds: [1, 101]"))
    assert main(["run", "--profile", str(profile), "--results", str(tmp_path / "r")]) == 2
    assert "share [1]" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_tuned_grid_cannot_be_sharded(tmp_path, capsys):
    profile = tmp_path / "p.yaml"
    profile.write_text(PROFILE)
    assert main(["run", "--profile", str(profile), "--shard", "1/2", "--results",
                 str(tmp_path / "r")]) == 2
    assert "--shard cannot split a tuned grid" in capsys.readouterr().err


def test_tune_flag_uses_the_default_space(tmp_path, capsys):
    profile = tmp_path / "p.yaml"
    profile.write_text(PROFILE.replace("tune: {lr: [1.0e-4, 3.0e-3], tuning_seeds: [100, 101], "
                                       "extend: false}",
                                       "budgets: [2]").replace("budgets: [3, 4]\n", "")
                       .replace("schedules: constant,onecycle", "schedules: constant"))
    assert main(["run", "--profile", str(profile), "--tune", "--results",
                 str(tmp_path / "r")]) == 0
    record = json.loads((tmp_path / "r/p/tuning.json").read_text())
    assert record["space"]["lr"] == [3e-4, 1e-3, 3e-3]
    assert record["tuning_seeds"] == [1000, 1001]


def test_a_choice_at_the_edge_of_the_space_is_marked(tuned):
    from bench.report.tuned import at_edge

    space = {"lr": [3e-4, 1e-3, 3e-3]}
    assert at_edge({"lr": 3e-3}, space) and at_edge({"lr": 3e-4}, space)
    assert not at_edge({"lr": 1e-3}, space) and not at_edge({"lr": 1e-3}, {"lr": [1e-3]})
    # The fixture's space has two points, so every choice lies on its edge.
    section = (tuned / "reports/tiny/report.md").read_text().split("## Each schedule tuned")[1]
    assert "(edge)" in section and "4 chosen settings marked *edge*" in section


EXTEND = """
dataset: {name: synthetic-la, options: {nodes: 8, days: 3, seed: 0}}
model: {name: stid, options: {embed_dim: 8, node_dim: 4, tod_dim: 4, dow_dim: 4, num_layers: 1,
                             dropout: 0.0}}
schedules: constant
budgets: [2]
seeds: [0, 1]
device: cpu
jobs: 1
threads: 1
tune: {lr: [1.0e-4, 2.0e-4], tuning_seeds: [100, 101], lr_bounds: [1.0e-5, 1.0e-3],
       own_settings: false}
"""


def test_next_lr_steps_outward_by_the_grids_ratio_within_the_bounds():
    from bench.tuning import grid_ratio, next_lr

    grid = [1e-3, 3e-3, 1e-2]
    r = grid_ratio(grid)
    assert r == pytest.approx(10 ** 0.5)
    assert next_lr(grid, True, r, (1e-5, 3e-2)) == 3e-2      # 3.2e-2 clipped to the bound
    assert next_lr(grid, False, r, (1e-5, 3e-2)) == 3.2e-4   # two significant digits
    assert next_lr([*grid, 3e-2], True, r, (1e-5, 3e-2)) is None  # already at the bound
    assert next_lr([1e-5, 1e-4], False, 10.0, (1e-5, 1.0)) is None
    assert grid_ratio([1e-3]) is None


def test_a_choice_at_the_edge_extends_the_grid_until_interior_or_at_the_bound(tmp_path, capsys):
    profile = tmp_path / "ext.yaml"
    profile.write_text(EXTEND)
    results = tmp_path / "results"
    assert main(["run", "--profile", str(profile), "--results", str(results)]) == 0
    err = capsys.readouterr().err
    exp = results / "ext"
    record = json.loads((exp / "tuning.json").read_text())
    entry = record["schedules"]["constant"]["2"]
    assert record["extend"] == {"on": True, "bounds": [1e-5, 1e-3], "ratio": 2.0}
    space = entry["lr_space"]
    assert space == sorted(space) and {1e-4, 2e-4} <= set(space)
    assert entry["extended"] == sorted(set(space) - {1e-4, 2e-4})
    # Two lr steps at 2 epochs: the larger lr wins, so the grid grew upward at least once.
    assert entry["extended"] and "adding lr 0.0004" in err
    # Each added point is one step of the grid's ratio beyond the last (or the bound).
    for below, above in zip(space[1:], space[2:]):
        assert above == pytest.approx(min(2 * below, 1e-3))
    # The choice is the lowest mean validation MAE over every point trained ...
    summary = pd.read_csv(exp / "summary.csv")
    tuning = summary[summary.seed.isin([100, 101])]
    means = {}
    for name, setting in record["settings"].items():
        rows = tuning[(tuning.schedule == name) & (tuning.budget == 2)]
        assert sorted(rows.seed) == [100, 101]  # both tuning seeds, every point
        means[setting["lr"]] = rows.val_mae.mean()
    assert sorted(means) == space
    chosen_lr = record["settings"][entry["chosen"]]["lr"]
    assert chosen_lr == min(means, key=means.get)
    # ... and it ends interior, or at the stated bound and marked so.
    if chosen_lr == max(space):
        assert chosen_lr == 1e-3 and entry["edge"] and entry["at_bound"]
    else:
        assert chosen_lr != min(space) and not entry["edge"] and not entry["at_bound"]
    # Own settings off: the evaluation seeds train the chosen setting alone.
    evaluation = summary[summary.seed.isin([0, 1])]
    assert set(evaluation.schedule) == {entry["chosen"]}
    assert record["own_settings"] is False
    # Running again trains nothing and reaches the same record.
    assert main(["run", "--profile", str(profile), "--results", str(results)]) == 0
    assert json.loads((exp / "tuning.json").read_text()) == record
    assert "finished" not in capsys.readouterr().err.replace("finished runs", "")


def test_lr_bounds_are_checked(tmp_path, capsys):
    profile = tmp_path / "bad.yaml"
    profile.write_text(EXTEND.replace("lr_bounds: [1.0e-5, 1.0e-3]", "lr_bounds: [1.0e-5, 1.5e-4]"))
    assert main(["run", "--profile", str(profile), "--results", str(tmp_path / "r")]) == 2
    assert "outside tune.lr_bounds" in capsys.readouterr().err

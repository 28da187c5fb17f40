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
tune: {lr: [1.0e-4, 3.0e-3], tuning_seeds: [100, 101]}
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
    profile.write_text(PROFILE.replace("tune: {lr: [1.0e-4, 3.0e-3], tuning_seeds: [100, 101]}",
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

"""``python -m bench compare``: pooled tests across experiments, both intervals, a
recommendation only where the pooled evidence holds, the answer first, and the descriptive
profiles."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.compare import RECOMMENDATION_RULE
from bench.store import atomic_write_json, atomic_write_text, rows_to_csv
from bench.tables import SUMMARY_COLUMNS

BUDGETS = (4, 8)


def write_experiment(results: Path, name: str, means: dict[str, float], seeds: int,
                     noise: float, seed: int, dataset: str = "synthetic-la") -> None:
    """An experiment folder as ``bench run`` leaves it (grid.json, experiment.json,
    summary.csv, epochs.csv), with final test MAE ``means[s]`` per schedule plus a per-seed
    offset shared by all schedules and independent noise of size ``noise``."""
    rng = np.random.default_rng(seed)
    exp = results / name
    schedules = {s: {"budget_dependent": False, "needs_metric": False} for s in means}
    cells = [[s, b, k] for s in means for b in BUDGETS for k in range(seeds)]
    atomic_write_json(exp / "grid.json", {"cells": cells, "schedules": schedules,
                                          "order": list(means)})
    atomic_write_json(exp / "experiment.json", {
        "dataset": {"name": dataset, "content": {"name": dataset}},
        "model": {"name": "/somewhere/on/disk/my_model.py:Net"}})
    offsets = rng.normal(0, 0.2, size=seeds)
    summary, epochs = [], []
    for s, m in means.items():
        for b in BUDGETS:
            for k in range(seeds):
                mae = float((m + 0.5 / b) * (1 + noise * rng.normal()) + offsets[k])
                summary.append({"schedule": s, "budget": b, "seed": k, "status": "finished",
                                "epochs_done": b, "test_mae": mae, "val_mae": mae,
                                "run": f"{s}/seed{k}"})
                epochs += [{"schedule": s, "budget": b, "seed": k, "epoch": e, "lr": 1e-3,
                            "val_mae": mae, "test_mae": mae} for e in range(b)]
    atomic_write_text(exp / "summary.csv", rows_to_csv(summary, SUMMARY_COLUMNS))
    atomic_write_text(exp / "epochs.csv", rows_to_csv(epochs))


def compare(tmp_path: Path, *names: str, out: str = "reports") -> str:
    """``names`` may end with extra options (``--settings own``)."""
    assert main(["compare", *names, "--results", str(tmp_path / "results"),
                 "--out", str(tmp_path / out), "--name", "cmp"]) == 0
    return (tmp_path / out / "cmp" / "compare.md").read_text()


def experiments(tmp_path: Path, means: dict[str, float], seeds: int, noise: float) -> list[str]:
    names = ["los-loop", "synthetic", "sz-taxi"]
    for i, name in enumerate(names):
        write_experiment(tmp_path / "results", name, means, seeds, noise, seed=i)
    return names


def recommendation(text: str, budget: int) -> str:
    block = text.split(f"## {budget} epochs")[1]
    return block.split("**Recommendation.**")[1].split("\n")[0]


def test_indistinguishable_schedules_get_no_recommendation(tmp_path):
    names = experiments(tmp_path, {"plateau": 4.0, "multistep": 4.0, "constant": 4.0},
                        seeds=8, noise=0.003)
    text = compare(tmp_path, *names)
    for b in BUDGETS:
        sentence = recommendation(text, b)
        assert "no schedule is recommended" in sentence and "use `" not in sentence
        # equal schedules within 0.3 % noise: equivalent within ±2 % on these datasets
        assert "equivalent within ±2 % on these datasets" in sentence
    assert RECOMMENDATION_RULE in text
    for png in ("performance_profile.png", "epochs_profile.png"):
        assert (tmp_path / "reports/cmp" / png).stat().st_size > 10_000
        assert f"]({png})" in text


def test_a_schedule_clearly_better_everywhere_is_recommended(tmp_path):
    names = experiments(tmp_path, {"plateau": 4.0, "multistep": 3.6, "constant": 4.1},
                        seeds=8, noise=0.003)
    text = compare(tmp_path, *names)
    for b in BUDGETS:
        sentence = recommendation(text, b)
        assert sentence.startswith(" **use `multistep`**"), sentence
    answer = text.split("## Answer")[1].split("\n## ")[0]
    assert text.index("## Answer") < text.index("## Experiments")
    assert answer.count("**use `multistep`**") == len(BUDGETS)
    assert "(3 experiments, 8 seeds each, margin ±2 %)" in answer
    # pooled tests with both intervals, the top's pairs first
    pooled = text.split(f"## {BUDGETS[0]} epochs")[1].split("Descriptive")[0]
    first = next(line for line in pooled.splitlines() if line.startswith("| `multistep` vs"))
    cells = [c.strip() for c in first.split("|")[1:-1]]
    assert cells[1:3] == ["3", "24"] and cells[3].startswith("-")
    assert cells[6].startswith("[-") and cells[7].startswith("[-")  # both intervals below 0
    assert "better on these datasets" in cells[8]
    # ranks and ratios per experiment: multistep first everywhere, plateau second
    row = next(line for line in text.splitlines() if line.startswith("| `multistep` |"))
    assert row.count("1 (1.000)") == 3 and "| 1.00 | 1.000 |" in row
    row = next(line for line in text.splitlines() if line.startswith("| `plateau` |"))
    assert row.count("2 (1.1") == 3


def test_three_seeds_can_support_a_recommendation(tmp_path):
    """The stratified sign-flip test decides from 3 seeds per experiment: a schedule 10 %
    better everywhere is recommended (the exact sign-flip test within one table could not)."""
    names = experiments(tmp_path, {"plateau": 4.0, "multistep": 3.6, "constant": 4.1},
                        seeds=3, noise=0.003)
    sentence = recommendation(compare(tmp_path, *names), BUDGETS[0])
    assert sentence.startswith(" **use `multistep`**"), sentence


def test_a_schedule_worse_in_one_experiment_is_not_recommended(tmp_path):
    """Better on two datasets, clearly worse on the third: the pooled test may favour it, but
    the experiment that judges it worse keeps it from being recommended."""
    results = tmp_path / "results"
    for i, (name, good) in enumerate((("one", 3.6), ("two", 3.6), ("three", 4.4))):
        write_experiment(results, name, {"plateau": 4.0, "multistep": good}, 8, 0.002, i)
    text = compare(tmp_path, "one", "two", "three")
    sentence = recommendation(text, BUDGETS[0])
    assert "no schedule is recommended" in sentence
    assert "In `three` it is judged worse than `plateau`" in sentence


def test_identical_runs_are_one_row(tmp_path):
    """Schedules whose runs are identical in every experiment are ranked and tested once."""
    results = tmp_path / "results"
    for i, name in enumerate(("one", "two")):
        write_experiment(results, name, {"plateau": 4.0, "multistep": 3.8, "constant": 3.8},
                         4, 0.0, i)
    text = compare(tmp_path, "one", "two")
    assert "`multistep` = `constant`" in text
    assert "| `constant` |" not in text and "`multistep` vs `constant`" not in text


def test_experiments_may_differ_in_schedules_and_budgets(tmp_path):
    results = tmp_path / "results"
    write_experiment(results, "a", {"plateau": 4.0, "multistep": 3.9}, 3, 0.01, 0)
    write_experiment(results, "b", {"plateau": 3.6, "onecycle": 4.0}, 3, 0.01, 1,
                     dataset="/data/private/my-sensors")
    text = compare(tmp_path, "a", "b")
    row = next(line for line in text.splitlines() if line.startswith("| `onecycle` |"))
    assert row.startswith("| `onecycle` | – | 2 (1.") and "| 2.00 |" in row
    row = next(line for line in text.splitlines() if line.startswith("| `plateau` |"))
    assert "| 2 (1." in row and "| 1 (1.000) |" in row and "| 1.50 |" in row
    # only plateau ran in both: it is the candidate, compared with each where both ran
    sentence = recommendation(text, BUDGETS[0])
    assert "Lowest pooled mean: `plateau`" in sentence or "use `plateau`" in sentence
    assert "`plateau` vs `multistep` | 1 | 3 |" in text
    assert "my-sensors" in text and "my_model.py:Net" in text
    for path in (str(tmp_path), "/data/private", "/somewhere"):
        assert path not in text  # experiment names, never folders


def test_compare_is_reproducible(tmp_path):
    names = experiments(tmp_path, {"plateau": 4.0, "multistep": 3.9}, seeds=3, noise=0.01)
    first, second = compare(tmp_path, *names, out="r1"), compare(tmp_path, *names, out="r2")
    assert "Regenerate with `python -m bench compare " in first
    assert first.replace("--out r1", "--out r2") == second  # only the command's --out differs
    assert (tmp_path / "r1/cmp/performance_profile.png").read_bytes() == \
        (tmp_path / "r2/cmp/performance_profile.png").read_bytes()


@pytest.mark.parametrize("names,message", [
    (["a"], "two or more experiments"),
    (["a", "nope"], "unknown experiment 'nope'"),
    (["a", "a"], "given twice")])
def test_compare_refuses_bad_experiment_lists_in_one_line(tmp_path, capsys, names, message):
    write_experiment(tmp_path / "results", "a", {"plateau": 4.0, "multistep": 3.9}, 2, 0.01, 0)
    assert main(["compare", *names, "--results", str(tmp_path / "results"),
                 "--out", str(tmp_path / "reports")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "reports").exists()


def test_experiment_description_reads_the_identity(tmp_path):
    write_experiment(tmp_path / "results", "a", {"plateau": 4.0}, 2, 0.01, 0)
    identity = json.loads((tmp_path / "results/a/experiment.json").read_text())
    assert identity["dataset"]["name"] == "synthetic-la"


def write_tuning(results: Path, name: str, chosen: dict[str, str]) -> None:
    """A tuning record that chose ``chosen[schedule]`` (a point's name) at every budget, and
    the tuning runs it was chosen on (seed 1000, validation MAE 1.0) in the grid and the
    summary: a record is used only where the experiment's grid and records bear it out."""
    exp = results / name
    grid = json.loads((exp / "grid.json").read_text())
    with open(exp / "summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    for point in dict.fromkeys(chosen.values()):
        for b in BUDGETS:
            grid["cells"].append([point, b, 1000])
            summary.append({"schedule": point, "budget": b, "seed": 1000, "status": "finished",
                            "epochs_done": b, "test_mae": 1.0, "val_mae": 1.0,
                            "run": f"{point}/seed1000"})
    atomic_write_json(exp / "grid.json", grid)
    atomic_write_text(exp / "summary.csv", rows_to_csv(summary, SUMMARY_COLUMNS))
    atomic_write_json(results / name / "tuning.json", {
        "eval_seeds": [0, 1, 2, 3, 4, 5], "tuning_seeds": [1000],
        "space": {"lr": [1e-3, 3e-3]},
        "schedules": {base: {str(b): {"chosen": point, "val_mae": {point: 1.0}}
                             for b in BUDGETS} for base, point in chosen.items()},
        "settings": {point: {"lr": 3e-3, "weight_decay": 0.0} for point in chosen.values()}})


def test_tuned_experiments_are_compared_at_their_chosen_settings(tmp_path):
    """At own settings `a` wins everywhere; tuned, `b`'s chosen point wins everywhere: the
    comparison follows the choice, under the schedule's own name, and says which view."""
    names = ["one", "two"]
    for i, name in enumerate(names):
        write_experiment(tmp_path / "results", name,
                         {"a": 3.0, "b": 3.3, "b@lr0.003": 2.7}, seeds=6, noise=0.001,
                         seed=i)
        write_tuning(tmp_path / "results", name, {"a": "a", "b": "b@lr0.003"})
    tuned = compare(tmp_path, *names)
    assert "**Each schedule tuned.**" in tuned
    assert "use `b`" in tuned and "b@lr0.003" not in tuned
    own = compare(tmp_path, *names, "--settings", "own")
    assert "**Own settings.**" in own and "use `a`" in own and "b@lr0.003" not in own


def test_tuned_view_refuses_untuned_experiments(tmp_path, capsys):
    write_experiment(tmp_path / "results", "tuned", {"a": 3.0, "b": 3.1}, 6, 0.01, seed=0)
    write_tuning(tmp_path / "results", "tuned", {"a": "a", "b": "b"})
    write_experiment(tmp_path / "results", "plain", {"a": 3.0, "b": 3.1}, 6, 0.01, seed=1)
    assert main(["compare", "tuned", "plain", "--settings", "tuned", "--results",
                 str(tmp_path / "results"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "plain was not tuned" in err and "Traceback" not in err


def test_the_notes_claim_is_judged_again_with_both_schedules_tuned(tmp_path):
    """The claims table adds MultiStepLR against Plateau at their chosen settings."""
    from bench.report.note_study import claims_section
    from bench.report.results import load_results

    write_experiment(tmp_path / "results", "tuned",
                     {"plateau": 3.3, "multistep": 3.0, "plateau@lr0.003": 2.95,
                      "multistep@lr0.003": 2.9}, seeds=6, noise=0.001, seed=0)
    write_tuning(tmp_path / "results", "tuned",
                 {"plateau": "plateau@lr0.003", "multistep": "multistep@lr0.003"})
    text = claims_section(load_results(tmp_path / "results" / "tuned"))
    row = next(line for line in text.splitlines() if "each tuned" in line)
    assert "chosen multistep lr 0.003, plateau lr 0.003" in row
    gain = float(row.split("|")[2].split("%")[0])
    assert -2.0 < gain < -1.2 and "wins 6/6" in row  # 2.9 against 2.95, not 3.0 against 3.3

"""The report renders every section and figure, opens with the answer, judges by the recorded
settings and publishes its per-seed numbers; the regression gate passes and fails as it
should."""

import csv
from pathlib import Path

import pandas as pd
import pytest

from bench.check import Check
from bench.cli import main

TINY = """
description: tiny report profile
dataset: {name: synthetic-la, options: {nodes: 8, days: 3, seed: 0}}
model: {name: stid, options: {embed_dim: 8, node_dim: 8, tod_dim: 8, dow_dim: 8, num_layers: 1,
        dropout: 0.0}}
train: {batch_size: 64}
schedules: seed,ablation,constant
budgets: [6, 8]
seeds: [0, 1, 2]
device: cpu
threads: 1
report: {reference: plateau, margin: 0.03}
"""


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    profile = root / "tiny.yaml"
    profile.write_text(TINY)
    assert main(["run", "--profile", str(profile), "--results", str(root / "results")]) == 0
    return root


def test_report_has_every_section_and_figure(experiment):
    out = experiment / "reports"
    assert main(["report", "--results", str(experiment / "results"), "--experiment", "tiny",
                 "--out", str(out)]) == 0
    text = (out / "tiny/report.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## Answer", "## Setup", "## The tuning note's claims, checked"]
    for heading in ("## Final test MAE", "## Test MAE at the best-validation epoch",
                    "## Against the reference (`plateau`), paired by seed",
                    "## What the gain is made of", "## Per horizon, RMSE and MAPE",
                    "## Schedules", "## Time", "## Environment"):
        assert heading in text, heading
    for figure in ("lr.png", "mae.png", "final_mae.png"):
        assert f"]({figure})" in text
        assert (out / "tiny" / figure).stat().st_size > 10_000
    assert "*historical average*" in text and "*persistence*" in text
    assert "MultiStepLR lr is 1e-3 for epochs 0–29" in text
    assert "| contrast | MAE difference |" in text  # the ablation, judged


def test_three_seeds_decide_every_comparison(experiment):
    """The quick grid's 3 seeds: every comparison reads better, worse, equivalent within the
    margin or inconclusive with its interval; intervals are simultaneous and say so; the rule
    names the recorded margin; identical runs are one row."""
    from bench.report.stats import verdict_rule

    out = experiment / "decide"
    assert main(["report", "--results", str(experiment / "results"), "--experiment", "tiny",
                 "--out", str(out)]) == 0
    text = (out / "tiny/report.md").read_text()
    assert verdict_rule(0.03) in text and "too few seeds" not in text
    section = text.split("## Against the reference")[1].split("\n## ")[0]
    verdicts = [line.rsplit("|", 2)[1].strip() for line in section.splitlines()
                if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    decided = [v for v in verdicts if v != "–"]
    assert decided and all(v.rstrip(" †") in ("better", "worse", "equivalent within ±3 %")
                           or v.startswith("inconclusive [") for v in decided), decided
    assert "| simultaneous 95 % interval |" in section and "Bonferroni" in section
    assert "TOST ±3 % p (Holm)" in section
    # multistep, constant and plateau at lr 1e-3 follow one lr path within 8 epochs
    assert "`multistep` = `plateau_lr1e-3_wd5e-4` = `constant`" in section
    assert section.count("| `constant`") == 0
    assert "**Best set**: " in section and "Seeds needed to resolve ±3 %" in section
    assert "python -m bench run --profile tiny --seeds " in section
    answer = text.split("## Answer")[1].split("\n## ")[0]
    assert answer.count("- **6 epochs** (3 seeds, margin ±3 %)") == 1
    assert "- **8 epochs**" in answer and "historical average" in answer
    assert "bootstrap" not in text and "seeds for 80 % power" not in text


def test_per_seed_numbers_are_published(experiment):
    out = experiment / "seeds"
    main(["report", "--results", str(experiment / "results"), "--experiment", "tiny",
          "--out", str(out)])
    rows = pd.read_csv(out / "tiny/per_seed.csv")
    assert list(rows.columns) == ["schedule", "setting", "budget", "seed", "final_val_mae",
                                  "final_test_mae", "best_val_epoch_test_mae"]
    summary = pd.read_csv(experiment / "results/tiny/summary.csv")
    merged = rows.merge(summary, on=["schedule", "budget", "seed"])
    assert len(merged) == len(summary) == len(rows) and set(rows.setting) == {"own"}
    assert (merged.final_test_mae == merged.test_mae).all()  # full precision
    assert (merged.final_val_mae == merged.val_mae).all()
    assert (merged.best_val_epoch_test_mae == merged.best_test_mae).all()


def test_the_recorded_settings_judge_and_the_command_line_overrides(experiment):
    """``bench run`` recorded the profile's reference and margin; a later report needs no
    profile. ``--margin`` changes the verdicts for one report and its regenerate command
    repeats it."""
    import json

    record = json.loads((experiment / "results/tiny/report.json").read_text())
    assert record == {"reference": "plateau", "margin": 0.03, "profile": "tiny"}
    out = experiment / "override"
    assert main(["report", "--results", str(experiment / "results"), "--experiment", "tiny",
                 "--out", str(out), "--margin", "0.5"]) == 2  # out of range: one line
    assert main(["report", "--results", str(experiment / "results"), "--experiment", "tiny",
                 "--out", str(out), "--margin", "0.01", "--reference", "constant"]) == 0
    text = (out / "tiny/report.md").read_text()
    assert "--reference constant --margin 0.01`" in text and "set on the command line" in text
    assert "## Against the reference (`constant`)" in text and "±1 %" in text
    assert "±3 %" not in text


def test_markdown_and_csv_text_are_escaped():
    from bench.report.markdown import code, csv_text, md_text

    # The report's helpers are the shared escapers (bench.escape, tested in test_hostile).
    assert md_text("a|b`c\nd") == "a\\|b\\`c\\\\nd"
    assert code("x|y") == "`x\\|y`" and md_text("x" * 500).startswith("x" * 200 + "…")
    assert csv_text("=1+1") == "'=1+1" and csv_text("plateau") == "plateau"


def test_report_numbers_come_from_the_summary(experiment):
    """Every table's cell is the summary's mean and spread."""
    out = experiment / "reports2"
    main(["report", "--results", str(experiment / "results"), "--experiment", "tiny",
          "--out", str(out)])
    text = (out / "tiny/report.md").read_text()
    summary = pd.read_csv(experiment / "results/tiny/summary.csv")
    cell = summary[(summary.schedule == "constant") & (summary.budget == 8)]["test_mae"]
    expected = f"{cell.mean():.3f} ± {cell.std(ddof=1):.3f}"
    assert expected in text


def test_report_is_reproducible(experiment):
    """The same records give the same bytes: no clock, no machine path."""
    out = experiment / "r1"
    texts, pictures, seeds = [], [], []
    for _ in range(2):
        main(["report", "--results", str(experiment / "results"), "--experiment", "tiny",
              "--out", str(out)])
        texts.append((out / "tiny/report.md").read_text())
        pictures.append((out / "tiny/lr.png").read_bytes())
        seeds.append((out / "tiny/per_seed.csv").read_bytes())
        (out / "tiny/report.md").unlink()
    assert texts[0] == texts[1] and pictures[0] == pictures[1] and seeds[0] == seeds[1]
    assert str(experiment) not in texts[0]


def scaled_baseline(experiment, factor, spread: float | None = 0.0) -> Path:
    """The results' own baseline with means times ``factor``; ``spread`` replaces the seed
    spread column (0: held to the tolerance alone), None drops it."""
    path = experiment / f"baseline-{factor}-{spread}.csv"
    assert main(["check", "--results", str(experiment / "results"), "--experiment", "tiny",
                 "--write-baseline", str(path)]) == 0
    df = pd.read_csv(path)
    df["test_mae"] *= factor
    if spread is None:
        df = df.drop(columns="test_mae_std")
    else:
        df["test_mae_std"] = spread
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("spread", [0.0, None])
@pytest.mark.parametrize("factor,code", [(1.0, 0), (1.05, 0), (0.99, 0), (0.95, 1)])
def test_gate_passes_equal_or_better_and_fails_worse(experiment, factor, code, spread, capsys):
    """factor < 1 makes the baseline better than the current results (a regression)."""
    baseline = scaled_baseline(experiment, factor, spread)
    got = main(["check", "--results", str(experiment / "results"), "--experiment", "tiny",
                "--baseline", str(baseline)])
    captured = capsys.readouterr()
    assert got == code
    if code:
        with open(baseline) as fh:
            rows = list(csv.DictReader(fh))
        assert captured.err.count("regression:") == len(rows)  # every cell named
        assert "REGRESSION" in captured.out


def test_gate_allows_the_seed_noise_of_the_baseline(experiment, capsys):
    """5 % worse fails at a zero spread, passes where the seeds spread more than that."""
    args = ["check", "--results", str(experiment / "results"), "--experiment", "tiny",
            "--baseline"]
    noisy = scaled_baseline(experiment, 0.95, spread=0.5)  # sqrt(2/3) * 0.5 MAE allowed
    assert main(args + [str(noisy)]) == 0
    written = experiment / "written.csv"
    assert main(["check", "--results", str(experiment / "results"), "--experiment", "tiny",
                 "--write-baseline", str(written)]) == 0
    recorded = pd.read_csv(written)
    summary = pd.read_csv(experiment / "results" / "tiny" / "summary.csv")
    want = summary.groupby(["schedule", "budget"])["test_mae"].std().reset_index()
    got = recorded.merge(want, on=["schedule", "budget"], suffixes=("", "_want"))
    assert len(got) == len(recorded)
    assert (got["test_mae_std"] - got["test_mae_want"]).abs().max() < 1e-12


def test_check_objects_are_the_rule():
    check = Check("plateau", 30, baseline=4.0, tolerance=0.02)
    assert check.fails(4.08) is None
    assert check.fails(3.5) is None
    assert "plateau @ 30 epochs" in check.fails(4.09)
    assert "no finished result" in check.fails(float("nan"))
    noisy = Check("plateau", 30, baseline=4.0, tolerance=0.02, noise=0.1)
    assert noisy.fails(4.18) is None
    assert "seed noise 0.1000" in noisy.fails(4.19)


@pytest.mark.parametrize("diffs, verdict", [
    ([-0.1], "one seed: no test"), ([-0.25, -0.22], "two seeds: no verdict"),
    ([-0.30, -0.28, -0.31, -0.29], "confirmed"),
    ([-0.01, -0.02, 0.0, -0.015], "refuted: the gain is smaller"),
    ([0.05, 0.06, 0.04], "refuted: MultiStepLR is worse"),
    ([-0.4, -0.05, -0.2], "undecided")])
def test_a_claimed_gain_is_refuted_when_its_interval_excludes_the_claimed_size(diffs, verdict):
    import numpy as np

    from bench.report.note_study import gain_verdict

    assert gain_verdict(np.log1p(np.array(diffs))).startswith(verdict)
    if verdict.startswith("refuted"):
        assert "one-sided p" in gain_verdict(np.log1p(np.array(diffs)))

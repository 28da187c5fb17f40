"""The report renders every section and figure; the regression gate passes and fails as it
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
seeds: [0, 1]
device: cpu
threads: 1
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
    for heading in ("## The tuning note's claims, checked", "## Final test MAE",
                    "## Test MAE at the best-validation epoch",
                    "## Against the original configuration (`plateau`), paired by seed",
                    "## What the gain is made of", "## Per horizon, RMSE and MAPE",
                    "## Schedules", "## Time", "## Environment"):
        assert heading in text, heading
    for figure in ("lr.png", "mae.png", "final_mae.png"):
        assert f"]({figure})" in text
        assert (out / "tiny" / figure).stat().st_size > 10_000
    assert "*historical average*" in text and "*persistence*" in text
    assert "MultiStepLR lr is 1e-3 for epochs 0–29" in text
    # The 2 x 2 ablation is filled in because the ablation group ran.
    assert "The note's change (plateau → multistep)" in text
    # Paired comparisons: t interval, exact and Holm p, verdict by the stated rule; two seeds
    # can never decide, so no comparison reads better or worse.
    from bench.report.stats import VERDICT_RULE

    assert "| 95 % t interval | wins | p | Holm p | verdict | seeds for 80 % power |" in text
    assert VERDICT_RULE in text and "| too few seeds to tell |" in text
    assert "| better |" not in text and "| worse |" not in text
    assert "bootstrap" not in text


def test_report_numbers_come_from_the_summary(experiment):
    out = experiment / "reports2"
    main(["report", "--results", str(experiment / "results"), "--experiment", "tiny",
          "--out", str(out)])
    text = (out / "tiny/report.md").read_text()
    summary = pd.read_csv(experiment / "results/tiny/summary.csv")
    cell = summary[(summary.schedule == "constant") & (summary.budget == 8)]["test_mae"]
    expected = f"{cell.mean():.3f} ± {cell.std(ddof=1):.3f}"
    assert expected in text


def test_report_is_reproducible(experiment):
    out = experiment / "r1"
    texts, pictures = [], []
    for _ in range(2):
        main(["report", "--results", str(experiment / "results"), "--experiment", "tiny",
              "--out", str(out)])
        texts.append((out / "tiny/report.md").read_text())
        pictures.append((out / "tiny/lr.png").read_bytes())
        (out / "tiny/report.md").unlink()
    assert texts[0] == texts[1] and pictures[0] == pictures[1]


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
    noisy = scaled_baseline(experiment, 0.95, spread=0.5)  # sqrt(2/2) * 0.5 MAE allowed
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


@pytest.mark.parametrize("speed, verdict", [
    (None, "not measured"), (2.0, "confirmed"), (1.83, "partly"), (1.2, "refuted: only"),
    (1.0, "refuted: not faster"), (0.7, "refuted: not faster")])
def test_convergence_verdict_grades_the_measured_speedup(speed, verdict):
    from bench.report.note_study import convergence_verdict

    assert convergence_verdict(speed).startswith(verdict)

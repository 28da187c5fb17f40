"""The progress bar: silent off a terminal, an ETA from measured epochs, messages kept."""

from __future__ import annotations

import io

from bench.plan import Job
from bench.progress import Progress

JOBS = [Job("a", 0, 10, (10,), False), Job("b", 0, 10, (10,), False)]


def test_silent_off_a_terminal_except_messages():
    out = io.StringIO()
    bar = Progress(JOBS, {}, out)
    bar.epoch({"key": "a/e10-seed0", "epoch": 1, "epochs": 10, "val_mae": 3.0, "seconds": 1.0})
    bar.message("finished a")
    bar.close()
    assert out.getvalue() == "finished a\n"


def test_eta_counts_remaining_epochs_at_the_measured_rate():
    bar = Progress(JOBS, {"a/e10-seed0": 4}, io.StringIO(), enabled=True)
    assert bar.eta() is None  # nothing measured yet
    bar.epoch({"key": "a/e10-seed0", "epoch": 5, "epochs": 10, "val_mae": 3.0, "seconds": 2.0})
    assert bar.eta() == (5 + 10) * 2.0  # 5 left of a, 10 of b, one run at a time
    bar.run_done("a/e10-seed0")
    assert bar.eta() == 10 * 2.0


def test_the_line_shows_runs_epochs_and_mae():
    out = io.StringIO()
    bar = Progress(JOBS, {}, out, enabled=True)
    bar.epoch({"key": "b/e10-seed0", "epoch": 3, "epochs": 10, "val_mae": 2.5, "seconds": 1.0})
    line = bar.line()
    assert "[0/2 runs]" in line and "b/e10-seed0 ep 3/10 val MAE 2.500" in line
    assert "ETA" in line and out.getvalue().startswith("\r")

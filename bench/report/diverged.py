"""The report of an experiment in which every run diverged.

Then no schedule has a final result: a ranking, a verdict or a claim check computed from the
curves before each run blew up would compare partial runs of different lengths and read as
if they meant something. So this report replaces the usual one (``write_report`` asks
``every_run_diverged`` first): it says so in its first line, keeps each run's reason (the
loss that was not finite, at which epoch), says what that usually means, and computes
nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.report.markdown import md_table
from bench.report.results import Results, dataset_title
from bench.store import RunDir
from bench.tables import job_for, read_grid

DIVERGED_NOTE = "every run diverged: the report says so and draws no figures"

ADVICE = ("When every schedule diverges, the cause is usually the model (its output scale, "
          "its initialisation, a division by a small number) or a learning rate too high for "
          "it under every schedule, not the schedules themselves.")


def every_run_diverged(res: Results) -> bool:
    """Whether every cell of the experiment diverged (none finished, none still to run)."""
    status = res.summary["status"]
    return len(status) > 0 and bool((status == "diverged").all())


def safe_text(text: object, limit: int = 200) -> str:
    """Text read from a results folder, made inert for markdown: one line, no backticks,
    pipes or angle brackets, bounded length."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", str(text))
    text = text.replace("`", "'").replace("|", "/").replace("<", "(").replace(">", ")")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def reasons(res: Results, exp_dir: Path) -> dict[tuple[str, int, int], str]:
    """Each diverged cell's reason, as its run recorded it (``training diverged at epoch 3
    (train loss nan)``); cells whose run folder cannot be read are left out."""
    try:
        grid = read_grid(exp_dir)
    except ValueError:
        return {}
    out = {}
    for r in res.summary[res.summary["status"] == "diverged"].itertuples():
        cell = (str(r.schedule), int(r.budget), int(r.seed))
        if cell[0] not in grid.get("schedules", {}):
            continue
        try:
            status = RunDir(exp_dir / "runs" / job_for(cell, grid).key).read_status() or {}
        except (ValueError, StopIteration, KeyError):
            continue
        if status.get("message"):
            out[cell] = safe_text(status["message"])
    return out


def diverged_report(res: Results, exp_dir: Path, command: str | None = None) -> str:
    """The whole report of an experiment in which every run diverged."""
    summary = res.summary
    why = reasons(res, exp_dir)
    model = res.experiment.get("model", {}) if isinstance(res.experiment, dict) else {}
    model_name = safe_text(model.get("name", "?")) if isinstance(model, dict) else "?"
    n = len(summary)
    lines = [f"# {res.name}: every run diverged", "",
             f"**Every run of experiment `{res.name}` diverged** ({n} of {n} cells, schedule "
             f"× budget × seed; model `{model_name}` on `{safe_text(dataset_title(res))}`): no "
             "schedule has a final result, so this report ranks nothing and computes no "
             "comparison, verdict or claim check from the partial curves. " + ADVICE
             + " Train one schedule for a few epochs (`--schedules constant --budgets 5 "
             "--seeds 1`) to watch the loss, lower the lr, or check the model's output.", ""]
    rows = []
    for r in summary.sort_values(["schedule", "budget", "seed"]).itertuples():
        cell = (str(r.schedule), int(r.budget), int(r.seed))
        epoch = "?" if r.diverged_epoch != r.diverged_epoch else str(int(r.diverged_epoch))
        rows.append([f"`{safe_text(cell[0], 80)}`", str(cell[1]), str(cell[2]), epoch,
                     why.get(cell, "–")])
    lines += ["## Runs", "",
              "Each run's reason as it recorded it (a non-finite training or validation loss, "
              "or a training loss above `train.divergence_factor` × the target's standard "
              "deviation):", "",
              md_table(["schedule", "budget", "seed", "diverged at epoch", "reason"], rows,
                       "lrrrl"), ""]
    if command:
        lines += [f"Regenerate with `{safe_text(command, 400)}`.", ""]
    return "\n".join(lines)

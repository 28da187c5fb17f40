"""The report as pure functions: ``Results`` (+ figure file names) in, markdown text out.

Nothing here touches the file system or matplotlib; ``bench.report.figures`` draws the PNGs
and ``bench.report.write_report`` writes both. Every number in the text is computed from
``summary.csv``, ``epochs.csv`` and ``baselines.csv`` of one experiment folder. The tuning
note's case study (claims, paired comparison against Plateau, ablation) is its own module,
``bench.report.note_study``; this one is the part every experiment gets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report import note_study
from bench.report.markdown import duration, f3, md_table, pm
from bench.report.results import BASELINE_LABELS, Results, baseline, per_seed, ranking


# -- sections -----------------------------------------------------------------------------
def header(res: Results) -> str:
    exp = res.experiment
    ds = exp.get("dataset", {})
    model = exp.get("model", {})
    train = exp.get("train", {})
    opts = ", ".join(f"{k}={v}" for k, v in ds.get("options", {}).items())
    mopts = ", ".join(f"{k}={v}" for k, v in model.get("options", {}).items())
    params = exp.get("parameters") or res.run_config.get("parameters")
    sha = model.get("source_sha256")
    lines = [
        f"# Learning-rate schedules: {model.get('name', '?')} on {ds.get('name', '?')}",
        "",
        f"Experiment `{res.name}`: {len(res.schedule_order)} schedules × budgets "
        f"{'/'.join(map(str, res.budgets))} epochs × {len(res.seeds)} seeds "
        f"({', '.join(map(str, res.seeds))}). Regenerate with "
        f"`python -m bench report --experiment {res.name}`.",
        "",
        f"- **Data**: `{ds.get('name')}`" + (f" ({opts})" if opts else "")
        + f", time-ordered split {ds.get('train_fraction', 0.7):g}/"
        f"{ds.get('val_fraction', 0.1):g}/rest, {ds.get('input_len', 12)} → "
        f"{ds.get('output_len', 12)} steps, scaler fit on observed training values only.",
        f"- **Model**: `{model.get('name')}`"
        + (f" (`{model['import_path']}`, {model.get('origin')})" if model.get("import_path")
           and model["import_path"] != model.get("name") else "")
        + (f"; options {mopts}" if mopts else "")
        + (f"; {params:,} parameters" if params else "")
        + (f"; source sha256 `{sha[:12]}`" if sha else "")
        + f"; batch {train.get('batch_size')}, gradient clipping at "
        f"{train.get('grad_clip')}. Every schedule of a seed starts from the same weights "
        "and sees batches in the same order.",
        "- **Metrics**: masked MAE / RMSE / MAPE on the original scale (missing targets "
        "excluded), on the test split unless marked val; *@h* is the h-th predicted step "
        "(@3 = 15 min at 5-minute data); the overall value is the mean of the per-step values. "
        "*Final* is the last epoch of the budget; *best-val* is the epoch with the lowest "
        "validation MAE within the budget.",
    ]
    return "\n".join(lines)


def schedules_section(res: Results) -> str:
    rows = []
    for s in res.schedule_order:
        info = res.schedules[s]
        stepped = f"per {info['step_unit']}" + (" on val loss" if info["needs_metric"] else "")
        rows.append([f"`{s}`", info["spec"]["kind"], info["hyperparameters"],
                     info.get("optimizer", "–"), stepped, info["summary"]])
    return "## Schedules\n\n" + md_table(
        ["schedule", "kind", "settings", "optimizer", "stepped", "what"], rows, "llllll")


def mae_table(res: Results, column: str, title: str, note: str = "") -> str:
    budgets = res.budgets
    best = {b: (ranking(res, b, column) or [(None, 0)])[0][0] for b in budgets}
    rows = []
    for s in res.schedule_order:
        row = [f"`{s}`"]
        for b in budgets:
            cell = pm(list(per_seed(res, s, b, column).values()))
            row.append(f"**{cell}**" if s == best[b] else cell)
        rows.append(row)
    for name, label in BASELINE_LABELS.items():
        v = baseline(res, name)
        if v is not None:
            rows.append([f"*{label}*"] + [f"*{f3(v)}*"] * len(budgets))
    text = f"## {title}\n\n{note}\n\n" if note else f"## {title}\n\n"
    return text + md_table(["schedule"] + [f"{b} epochs" for b in budgets], rows)


def horizon_tables(res: Results) -> str:
    parts = ["## Per horizon, RMSE and MAPE (final epoch, mean over seeds)"]
    cols = [("test_mae", "MAE"), ("test_mae_h3", "MAE@3"), ("test_mae_h6", "MAE@6"),
            ("test_mae_h12", "MAE@12"), ("test_rmse", "RMSE"), ("test_rmse_h12", "RMSE@12"),
            ("test_mape", "MAPE %"), ("best_epoch", "best-val epoch")]
    for b in res.budgets:
        rows = []
        for s in res.schedule_order:
            vals = [per_seed(res, s, b, c) for c, _ in cols]
            if not vals[0]:
                continue
            cells = [f3(np.mean(list(v.values()))) for v in vals[:-1]]
            cells.append(f"{np.mean(list(vals[-1].values())):.0f}")
            rows.append([f"`{s}`"] + cells)
        for name, label in BASELINE_LABELS.items():
            if baseline(res, name) is None:
                continue
            cells = [f3(baseline(res, name, "test", c.replace("test_", ""))) for c, _ in cols[:-1]]
            rows.append([f"*{label}*"] + cells + ["–"])
        parts.append(f"### {b} epochs\n\n" + md_table(["schedule"] + [h for _, h in cols], rows))
    return "\n\n".join(parts)


def timing_section(res: Results) -> str:
    df = res.finished()
    rows = []
    total = 0.0
    for s in res.schedule_order:
        d = df[df["schedule"] == s]
        if d.empty:
            continue
        longest = d.sort_values("budget").groupby("run").tail(1)  # one row per trained run
        total += longest["seconds"].sum()
        rows.append([f"`{s}`", f"{d['seconds_per_epoch'].mean():.2f}",
                     str(len(longest)), duration(longest["seconds"].sum())])
    return ("## Time\n\nSeconds per epoch include validation and test evaluation. A schedule "
            "whose lr path does not depend on the budget is trained once per seed to the "
            "longest budget and its shorter budgets are read off that run.\n\n"
            + md_table(["schedule", "s / epoch", "runs trained", "wall time"], rows)
            + f"\n\nTraining time summed over runs: {duration(total)} (the wall time is "
            "shorter when runs train in parallel with `jobs`).")


def status_section(res: Results) -> str:
    bad = res.summary[res.summary["status"] != "finished"]
    if bad.empty:
        return "All runs finished."
    rows = []
    for _, r in bad.iterrows():
        detail = ""
        if r["status"] == "diverged" and not pd.isna(r.get("diverged_epoch")):
            detail = f"diverged at epoch {int(r['diverged_epoch'])}"
        rows.append([f"`{r['schedule']}`", str(r["budget"]), str(r["seed"]), r["status"],
                     str(r["epochs_done"]), detail])
    return ("## Runs that did not finish\n\nThese cells are left out of the means above.\n\n"
            + md_table(["schedule", "budget", "seed", "status", "epochs done", "detail"], rows,
                       "lrrlrl"))


def environment_section(res: Results) -> str:
    env = res.environment
    if not env:
        return ""
    keys = ["device", "device_name", "torch", "python", "numpy", "cpu_count", "torch_threads",
            "platform", "git_commit"]
    rows = [[k, str(env.get(k))] for k in keys if k in env]
    return "## Environment\n\n" + md_table(["", ""], rows, "ll")


def figures_section(figures: dict[str, str]) -> str:
    captions = {
        "lr": "Learning rate against epoch (log scale, drawn as steps), one panel per budget. "
              "Per-epoch schedules change only at epoch boundaries; metric-driven ones differ "
              "by seed (thin lines).",
        "mae": "Validation (top) and test (bottom) MAE against epoch: mean over seeds, "
               "shaded ± one standard deviation; dashed lines are historical average and "
               "persistence.",
        "final": "Final test MAE per schedule and budget: each seed as a dot, the mean as a "
                 "bar.",
    }
    parts = []
    for key, file in figures.items():
        parts.append(f"![{key}]({file})\n\n*{captions.get(key, '')}*")
    return "\n\n".join(parts)


def render(res: Results, figures: dict[str, str]) -> str:
    """The whole report as markdown."""
    sections = [
        header(res),
        status_section(res),
        note_study.claims_section(res),
        figures_section({k: v for k, v in figures.items() if k == "lr"}),
        mae_table(res, "test_mae", "Final test MAE (mean ± std over seeds)",
                  "Bold: best mean per budget. Historical average and persistence need no "
                  "training and are shown for scale."),
        figures_section({k: v for k, v in figures.items() if k != "lr"}),
        mae_table(res, "best_test_mae", "Test MAE at the best-validation epoch",
                  "Early stopping on validation MAE within each budget, as a practitioner "
                  "would select a checkpoint."),
        note_study.comparison_section(res),
        note_study.ablation_section(res),
        horizon_tables(res),
        schedules_section(res),
        timing_section(res),
        environment_section(res),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"

"""The report as pure functions: ``Results`` (+ figure file names) in, markdown text out.

Nothing here touches the file system or matplotlib; ``bench.report.figures`` draws the PNGs
and ``bench.report.write_report`` writes both. Every number in the text is computed from
``summary.csv``, ``epochs.csv`` and ``baselines.csv`` of one experiment folder. The tuning
note's case study (claims, paired comparison against Plateau, ablation) is its own module,
``bench.report.note_study``; this one is the part every experiment gets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.data import ahead_text, interval_text
from bench.escape import md_code, md_text
from bench.report import note_study
from bench.report.markdown import duration, f3, md_table, pm
from bench.report.results import (
    BASELINE_LABELS,
    Results,
    baseline,
    data_facts,
    dataset_title,
    interval_minutes,
    per_seed,
    ranking,
    units,
)
from bench.report.tuned import tuned_section


# -- sections -----------------------------------------------------------------------------
def horizon_label(res: Results, h: int) -> str:
    """``@3 (15 min)``, ``@3 (3 h)``: the step and how far ahead it lies."""
    minutes = interval_minutes(res)
    return f"@{h} ({ahead_text(h, minutes)})" if minutes else f"@{h}"


def _shown(value) -> str:
    """An option's value for the report: a path shows only its last part (reports travel)."""
    text = str(value)
    return Path(text).name if ("/" in text or "\\" in text) else text


def header(res: Results, command: str | None = None) -> str:
    exp = res.experiment
    ds = exp.get("dataset", {})
    model = exp.get("model", {})
    train = exp.get("train", {})
    facts = data_facts(res)
    opts = md_text(", ".join(f"{k}={_shown(v)}" for k, v in ds.get("options", {}).items()), 600)
    mopts = md_text(", ".join(f"{k}={v}" for k, v in model.get("options", {}).items()), 600)
    params = exp.get("parameters") or res.run_config.get("parameters")
    sha = model.get("source_sha256")
    command = command or f"python -m bench report --experiment {res.name}"
    lines = [
        f"# Learning-rate schedules: {md_text(model.get('name', '?'))} on "
        f"{md_text(dataset_title(res))}",
        "",
        f"Experiment {md_code(res.name)}: {len(res.schedule_order)} schedules × budgets "
        f"{'/'.join(map(str, res.budgets))} epochs × {len(res.seeds)} "
        f"seed{'s' if len(res.seeds) != 1 else ''} ({', '.join(map(str, res.seeds))}). "
        f"Regenerate with {md_code(command, 1000)}.",
        "",
        "- **Data**: " + data_text(res, ds, facts, opts),
        f"- **Model**: {md_code(model.get('name'))}"
        + (f" ({md_code(model['import_path'])}, {md_text(model.get('origin'))})"
           if model.get("import_path") and model["import_path"] != model.get("name") else "")
        + (f"; options {mopts}" if mopts else "")
        + (f"; {params:,} parameters" if isinstance(params, int) and params else "")
        + (f"; source sha256 {md_code(sha[:12])}" if sha else "")
        + f"; batch {md_text(train.get('batch_size'))}, gradient clipping at "
        f"{md_text(train.get('grad_clip'))}"
        + "".join(f", {md_text(t)}" for t in arithmetic_text(train))
        + ". Every schedule of a seed starts from the same weights "
        "and sees batches in the same order.",
        "- **Metrics**: masked MAE / RMSE / MAPE in " + md_text(units(res)) + " (missing targets "
        "excluded), on the test split unless marked val; *@h* is the h-th predicted step"
        + (f" ({', '.join(f'@{h} = {ahead_text(h, interval_minutes(res))}' for h in (3, 6, 12))}"
           f" ahead at {interval_text(interval_minutes(res))} data)"
           if interval_minutes(res) else "")
        + "; the overall value is the mean of the per-step values. "
        "*Final* is the last epoch of the budget; *best-val* is the epoch with the lowest "
        "validation MAE within the budget.",
    ]
    if len(res.seeds) == 1:
        lines.append("- **One seed**: every comparison in this report rests on a single seed, "
                     "so no spread and no interval is shown; differences between schedules "
                     "may be seed noise.")
    return "\n".join(lines)


def arithmetic_text(train: dict) -> list[str]:
    """The training settings that change the arithmetic, where they differ from float32."""
    out = []
    if train.get("autocast"):
        out.append(f"{train['autocast']} autocast")
    if train.get("tf32") is True:
        out.append("TF32 matmuls and convolutions on CUDA")
    if train.get("compile") is True:
        out.append("torch.compile")
    return out


def data_text(res: Results, ds: dict, facts: dict, opts: str) -> str:
    """The data paragraph: what, how much, how often, how much is missing."""
    head = md_code(dataset_title(res)) + (f" ({opts})" if opts else "")
    split = (f"time-ordered split {ds.get('train_fraction', 0.7):g}/"
             f"{ds.get('val_fraction', 0.1):g}/rest, {md_text(ds.get('input_len', 12))} → "
             f"{md_text(ds.get('output_len', 12))} steps, scaler fit on observed training "
             "values only")
    if not facts:
        return f"{head}, {split}."
    sp = facts["splits"]
    missing = ", ".join(f"{k} {100 * sp[k]['missing_share']:.1f} %"
                        for k in ("train", "val", "test"))
    marker = ("none: only empty cells are missing, zeros are values"
              if facts["null_value"] == "none" else md_text(facts["null_value"])
              + ("" if facts.get("null_value_stated", True) else " (the default, not stated)"))
    return (f"{head}: {facts['nodes']} nodes, {facts['steps']} steps of "
            f"{facts['interval_minutes']} min from {md_text(facts['start'])} to "
            f"{md_text(facts['end'])} ({facts['days']:.1f} days), in {md_text(facts['units'])}; "
            f"{split} "
            f"({sp['train']['steps']}/{sp['val']['steps']}/{sp['test']['steps']} steps, "
            f"{sp['train']['windows']}/{sp['val']['windows']}/{sp['test']['windows']} windows). "
            f"Missing-value marker {marker}; targets treated as missing: {missing}.")


def _the(label: str) -> str:
    return label if label == "persistence" else f"the {label}"


def baseline_verdict(res: Results) -> str:
    """Per budget, whether the best schedule beats the baselines on test, by how much; said
    plainly before any ranking when none does."""
    ha = baseline(res, "historical_average")
    pers = baseline(res, "persistence")
    if ha is None and pers is None:
        return ""
    lines = []
    refs = [(BASELINE_LABELS[n], v) for n, v in (("historical_average", ha),
                                                  ("persistence", pers)) if v is not None]
    for b in res.budgets:
        ranked = ranking(res, b)
        if not ranked:
            continue
        best, mae = ranked[0]
        losing = [(label, v) for label, v in refs if mae >= v]
        if losing:
            lost = " and ".join(f"{_the(label)} ({f3(v)})" for label, v in losing)
            lines.append(f"- **{b} epochs: no trained schedule beats {lost}**; the best, "
                         f"`{best}`, reaches {f3(mae)}. The rankings below compare schedules "
                         "that all lose to a forecaster that needs no training.")
        else:
            gains = " and ".join(f"{_the(label)} ({f3(v)}) by {100 * (v - mae) / v:.1f} %"
                                 for label, v in refs)
            lines.append(f"- {b} epochs: the best schedule, `{best}` ({f3(mae)}), beats "
                         f"{gains}.")
    if not lines:
        return ""
    seeds = "one seed" if len(res.seeds) == 1 else "mean over seeds"
    return (f"## Against the baselines\n\nFinal test MAE in {md_text(units(res))} ({seeds}) "
            "against the forecasters that need no training:\n\n" + "\n".join(lines))


def schedules_section(res: Results) -> str:
    rows = []
    for s in res.schedule_order:
        info = res.schedules[s]
        stepped = f"per {info['step_unit']}" + (" on val loss" if info["needs_metric"] else "")
        rows.append([f"`{s}`", md_text(info["spec"]["kind"]), md_text(info["hyperparameters"]),
                     md_text(info.get("optimizer", "–")), md_text(stepped),
                     md_text(info["summary"])])
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
    parts = ["## Per horizon, RMSE and MAPE (final epoch, "
             + ("one seed)" if len(res.seeds) == 1 else "mean over seeds)")]
    at = {h: horizon_label(res, h) for h in (3, 6, 12)}
    cols = [("test_mae", "MAE"), ("test_mae_h3", f"MAE{at[3]}"), ("test_mae_h6", f"MAE{at[6]}"),
            ("test_mae_h12", f"MAE{at[12]}"), ("test_rmse", "RMSE"),
            ("test_rmse_h12", f"RMSE{at[12]}"), ("test_mape", "MAPE %"),
            ("best_epoch", "best-val epoch")]
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
    total, shared_total = 0.0, 0
    has_shared = "shared_epochs" in df and "trained_seconds" in df
    for s in res.schedule_order:
        d = df[df["schedule"] == s]
        if d.empty:
            continue
        longest = d.sort_values("budget").groupby("run").tail(1)  # one row per trained run
        seconds = longest["trained_seconds"] if has_shared else longest["seconds"]
        shared = int(longest["shared_epochs"].sum()) if has_shared else 0
        total += seconds.sum()
        shared_total += shared
        rows.append([f"`{s}`", f"{d['seconds_per_epoch'].mean():.2f}", str(len(longest)),
                     str(shared), duration(seconds.sum())])
    return ("## Time\n\nSeconds per epoch include validation and test evaluation. A schedule "
            "whose lr path does not depend on the budget is trained once per seed to the "
            "longest budget and its shorter budgets are read off that run. Runs that follow "
            "the same lr path for their first epochs train those epochs once: a run forks "
            "from the shared trunk where its path leaves it, with records identical to a run "
            "trained alone (epochs shared).\n\n"
            + md_table(["schedule", "s / epoch", "runs", "epochs shared", "training time"],
                       rows)
            + f"\n\nTraining time summed over runs: {duration(total)}, with {shared_total} "
            "epochs taken from shared trunks (the wall time is shorter when runs train in "
            "parallel with `jobs`).")


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
    rows = [[k, md_text(env.get(k))] for k in keys if k in env]
    return "## Environment\n\n" + md_table(["", ""], rows, "ll")


def figures_section(figures: dict[str, str], one_seed: bool = False) -> str:
    captions = {
        "lr": "Learning rate against epoch (log scale, drawn as steps), one panel per budget. "
              "Per-epoch schedules change only at epoch boundaries; metric-driven ones differ "
              "by seed (thin lines).",
        "mae": ("Validation (top) and test (bottom) MAE against epoch, one seed"
                if one_seed else "Validation (top) and test (bottom) MAE against epoch: mean "
                "over seeds, shaded ± one standard deviation")
               + "; dotted and dashed lines are the historical average and persistence.",
        "sensitivity": "Mean final validation MAE over the tuning seeds against the peak "
                       "learning rate, per schedule and budget; the star marks the chosen "
                       "setting. A flat curve means the schedule is robust to its lr.",
        "final": ("Final test MAE per schedule and budget, one seed, as a bar from zero"
                  if one_seed else "Final test MAE per schedule and budget: each seed as a "
                  "dot, the mean as a bar from zero")
                 + "; the vertical lines are the historical average and persistence.",
    }
    parts = []
    for key, file in figures.items():
        parts.append(f"![{key}]({file})\n\n*{captions.get(key, '')}*")
    return "\n\n".join(parts)


def render(res: Results, figures: dict[str, str], command: str | None = None) -> str:
    """The whole report as markdown; ``command`` is the one that regenerates it."""
    one_seed = len(res.seeds) == 1
    spread = "one seed" if one_seed else "mean ± std over seeds"
    sections = [
        header(res, command),
        baseline_verdict(res),
        status_section(res),
        tuned_section(res),
        figures_section({k: v for k, v in figures.items() if k == "sensitivity"}, one_seed),
        note_study.claims_section(res),
        figures_section({k: v for k, v in figures.items() if k == "lr"}, one_seed),
        mae_table(res, "test_mae", f"Final test MAE ({spread})",
                  "Bold: lowest per budget (whether it beats the baselines is stated above). "
                  "Historical average and persistence need no training and are shown for "
                  "scale."),
        figures_section({k: v for k, v in figures.items() if k in ("mae", "final")},
                        one_seed),
        mae_table(res, "best_test_mae", f"Test MAE at the best-validation epoch ({spread})",
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

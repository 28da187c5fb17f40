"""The report as pure functions: ``Results`` (+ figure file names) in, markdown text out.

Nothing here touches the file system or matplotlib; ``bench.report.figures`` draws the PNGs
and ``bench.report.write_report`` writes both. Every number in the text is computed from
``summary.csv``, ``epochs.csv`` and ``baselines.csv`` of one experiment folder (and
``tuning.json``), and nothing else: no clock, no machine path, so the same records give the
same text. The report opens with the answer (``answer_section``), then the tuning note's
claims (``bench.report.note_study``), then every detail; verdicts come from
``bench.report.verdicts``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.data import ahead_text, interval_text
from bench.report import note_study
from bench.report.markdown import code, duration, f3, md_table, md_text, p_text, pct, pm
from bench.report.results import (
    BASELINE_LABELS,
    Results,
    baseline,
    data_facts,
    dataset_title,
    interval_minutes,
    per_seed,
    ranking,
    tuned_order,
    units,
)
from bench.report.settings import Judging
from bench.report.stats import margin_text, verdict_rule
from bench.report.tuned import tuned_section
from bench.report.verdicts import (
    BudgetVerdicts,
    answer_line,
    best_set_text,
    headline_view,
    judge_budget,
    merged_note,
    needed_text,
)


# -- sections -----------------------------------------------------------------------------
def horizon_label(res: Results, h: int) -> str:
    """``@3 (15 min)``, ``@3 (3 h)``: the step and how far ahead it lies."""
    minutes = interval_minutes(res)
    return f"@{h} ({ahead_text(h, minutes)})" if minutes else f"@{h}"


def _shown(value) -> str:
    """An option's value for the report: a path shows only its last part (reports travel)."""
    text = str(value)
    return md_text(Path(text).name if ("/" in text or "\\" in text) else text)


def title(res: Results, command: str | None = None, tuned: bool = False) -> str:
    """The title and the one line that says what was run and how to regenerate it."""
    model = res.experiment.get("model", {})
    command = command or f"python -m bench report --experiment {md_text(res.name)}"
    seeds = len(res.seeds)
    line = (f"Experiment {code(res.name)}: {len(res.schedule_order)} schedules × budgets "
            f"{'/'.join(map(str, res.budgets))} epochs × {seeds} "
            f"seed{'s' if seeds != 1 else ''} ({', '.join(map(str, res.seeds))})"
            + ("; every schedule tuned on the same search space, and every headline number "
               "below is the tuned one (own-settings numbers are labelled as such)"
               if tuned else "")
            + f". Regenerate with {code(command, 1000)}.")
    return (f"# Learning-rate schedules: {md_text(model.get('name', '?'))} on "
            f"{md_text(dataset_title(res))}\n\n{line}")


def setup_section(res: Results, judging: Judging) -> str:
    """Data, model, metrics and the settings the verdicts are judged under."""
    exp = res.experiment
    ds = exp.get("dataset", {})
    model = exp.get("model", {})
    train = exp.get("train", {})
    facts = data_facts(res)
    opts = ", ".join(f"{md_text(k)}={_shown(v)}" for k, v in ds.get("options", {}).items())
    mopts = ", ".join(f"{md_text(k)}={md_text(v)}" for k, v in model.get("options", {}).items())
    params = exp.get("parameters") or res.run_config.get("parameters")
    sha = model.get("source_sha256")
    lines = [
        "## Setup",
        "",
        "- **Data**: " + data_text(res, ds, facts, opts),
        f"- **Model**: {code(model.get('name'))}"
        + (f" ({code(model['import_path'])}, {md_text(model.get('origin'))})"
           if model.get("import_path") and model["import_path"] != model.get("name") else "")
        + (f"; options {mopts}" if mopts else "")
        + (f"; {params:,} parameters" if isinstance(params, int) else "")
        + (f"; source sha256 {code(str(sha)[:12])}" if sha else "")
        + f"; batch {md_text(train.get('batch_size'))}, gradient clipping at "
        f"{md_text(train.get('grad_clip'))}"
        + "".join(f", {t}" for t in arithmetic_text(train))
        + ". Every schedule of a seed starts from the same weights "
        "and sees batches in the same order.",
        "- **Metrics**: masked MAE / RMSE / MAPE in " + md_text(units(res)) + " (missing "
        "targets excluded), on the test split unless marked val; *@h* is the h-th predicted "
        "step"
        + (f" ({', '.join(f'@{h} = {ahead_text(h, interval_minutes(res))}' for h in (3, 6, 12))}"
           f" ahead at {interval_text(interval_minutes(res))} data)"
           if interval_minutes(res) else "")
        + "; the overall value is the mean of the per-step values. "
        "*Final* is the last epoch of the budget; *best-val* is the epoch with the lowest "
        "validation MAE within the budget.",
        f"- **Verdicts**: {judging.caption()}. Per-seed numbers: `per_seed.csv` beside this "
        "report.",
    ]
    if len(res.seeds) == 1:
        lines.append("- **One seed**: every comparison in this report rests on a single seed, "
                     "so no spread, no interval and no verdict is shown; differences between "
                     "schedules may be seed noise.")
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
    if train.get("flush_denormal") is True:
        out.append("denormals flushed to zero")
    return out


def data_text(res: Results, ds: dict, facts: dict, opts: str) -> str:
    """The data paragraph: what, how much, how often, how much is missing."""
    head = code(dataset_title(res)) + (f" ({opts})" if opts else "")
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


def answer_section(res: Results, verdicts: dict[int, BudgetVerdicts], tuned: bool) -> str:
    """The answer first: per budget, the schedule to use or the best set with its verdict
    words, the margin, the seeds, the reference comparisons and the baselines."""
    if not verdicts:
        return ""
    judging = next(iter(verdicts.values())).judging
    lines = [answer_line(res, v, tuned) for v in verdicts.values()]
    return ("## Answer\n\nWhich schedule to use at each budget, by final test MAE paired by "
            f"seed: the best set is every schedule no other is better than (all pairs, paired "
            f"t, Holm), each with its verdict against the best; equivalence is within "
            f"±{margin_text(judging.margin)} on the MAE ratio"
            + (", with each schedule at the setting its tuning chose" if tuned else "")
            + ". The rule and the tables are under *Against the reference* below.\n\n"
            + "\n".join(lines))


def comparison_section(res: Results, verdicts: dict[int, BudgetVerdicts], tuned: bool) -> str:
    """Every schedule against the pre-declared reference, per budget: the verdict table,
    the best set and the seeds the table needs."""
    if not verdicts:
        return ""
    judging = next(iter(verdicts.values())).judging
    ref = code(judging.reference)
    parts = [f"## Against the reference ({ref}), paired by seed"
             + (", each schedule tuned" if tuned else ""),
             f"{verdict_rule(judging.margin, judging.alpha)} The reference is declared before "
             "the runs (the profile's `report.reference`), never the best of the same seeds. "
             f"*change*: the geometric mean over seeds of the MAE ratio to {ref}, minus 1 "
             "(negative is better); *interval*: its simultaneous interval; *wins*: seeds on "
             f"which the schedule beat {ref}; *t p*, *TOST p*, *sign-flip p*: raw, with the "
             "Holm-adjusted value in parentheses; the exact sign-flip test (all 2ⁿ sign "
             "patterns; ≈: 9999 random ones beyond 16 seeds) is a robustness check that "
             "assumes no normality: † marks a row where it could reach 0.05 and disagrees with "
             "the t verdict. *Best set*: all pairs compared, Holm over every pair."]
    parts += [comparison_table(res, v) for v in verdicts.values()]
    return "\n\n".join(parts)


def comparison_table(res: Results, v: BudgetVerdicts) -> str:
    head = f"### {v.budget} epochs (ranked by mean final test MAE)"
    ref = code(v.judging.reference)
    notes = []
    if v.reference is None:
        notes.append(f"The reference {ref} has no finished run at this budget, so no "
                     "comparison against it is made.")
    rows = []
    for rank, r in enumerate(v.rows, 1):
        cells = [str(rank), r.label, pm(list(r.values.values()))]
        j = v.judgements.get(r.names)
        if r is v.reference:
            rows.append(cells + ["reference"] + ["–"] * 6)
        elif j is None:
            rows.append(cells + ["no shared seeds" if v.reference is not None else "–"]
                        + ["–"] * 6)
        else:
            rows.append(cells + [
                pct(j.change), j.interval_text(), f"{j.wins}/{j.n}",
                _p_pair(j.p, j.p_holm), _p_pair(j.p_tost, j.p_tost_holm),
                _p_pair(j.p_flip, j.p_flip_holm, j.flip_exact),
                j.text() + (" †" if j.flagged else "")])
    level = next((j.level for j in v.judgements.values() if j.level), None)
    table = md_table(["rank", "schedule", "test MAE", f"change vs {ref}",
                      "simultaneous 95 % interval", "wins", "t p (Holm)",
                      f"TOST ±{margin_text(v.judging.margin)} p (Holm)",
                      "sign-flip p (Holm)", "verdict"], rows, "llrrrrrrrl")
    if level is not None:
        notes.append(f"Intervals: simultaneous 95 % over the m = {v.m} comparisons (each at "
                     f"{100 * level:.4g} %, Bonferroni); the verdicts are Holm's over the "
                     "same m.")
        n = max(j.n for j in v.judgements.values())
        if not any(j.flip_can_reject for j in v.judgements.values()) and n >= 2:
            notes.append(f"With {n} seeds and {v.m} comparisons the sign-flip test cannot reach "
                         f"0.05 (its smallest Holm p is {v.m} × 2/2^{n} = "
                         f"{min(1.0, v.m * 2 / 2 ** n):.3g}), so it flags nothing.")
    merged = merged_note(v.rows)
    if merged:
        notes.append(merged)
    notes.append(f"**Best set**: {best_set_text(v)}"
                 + (f" (all {v.best.pairs} pairs, Holm; intervals simultaneous over them)"
                    if v.best is not None and v.best.n >= 3 else "") + ".")
    notes.append(needed_text(res, v))
    return head + "\n\n" + table + "\n\n" + "\n\n".join(notes)


def _p_pair(p: float | None, adjusted: float | None, exact: bool = True) -> str:
    if p is None:
        return "–"
    return f"{p_text(p, exact)} ({p_text(adjusted, exact)})"


def schedules_section(res: Results) -> str:
    rows = []
    for s in res.schedule_order:
        info = res.schedules[s]
        stepped = (f"per {md_text(info['step_unit'])}"
                   + (" on val loss" if info["needs_metric"] else ""))
        rows.append([code(s), md_text(info["spec"]["kind"]), md_text(info["hyperparameters"]),
                     md_text(info.get("optimizer", "–")), stepped, md_text(info["summary"])])
    return "## Schedules\n\n" + md_table(
        ["schedule", "kind", "settings", "optimizer", "stepped", "what"], rows, "llllll")


def mae_table(res: Results, column: str, title: str, note: str = "") -> str:
    budgets = res.budgets
    best = {b: (ranking(res, b, column) or [(None, 0)])[0][0] for b in budgets}
    rows = []
    for s in res.schedule_order:
        row = [code(s)]
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
            rows.append([code(s)] + cells)
        for name, label in BASELINE_LABELS.items():
            if baseline(res, name) is None:
                continue
            cells = [f3(baseline(res, name, "test", c.replace("test_", ""))) for c, _ in cols[:-1]]
            rows.append([f"*{label}*"] + cells + ["–"])
        parts.append(f"### {b} epochs\n\n" + md_table(["schedule"] + [h for _, h in cols], rows))
    return "\n\n".join(parts)


def timing_section(res: Results) -> str:
    """``## Time``: what each schedule's finished runs cost, from the seconds of the epochs
    each run trained itself (a run that did not finish has no summed seconds and is left
    out). In a tuned experiment every tuning point counts under the schedule it tunes, on the
    tuning seeds and on the evaluation seeds: that is what the answer cost."""
    tuned = bool(res.tuning)
    groups = {"evaluation": res.finished()}
    if tuned and not res.tuning_runs.empty:
        groups["tuning"] = res.tuning_runs[res.tuning_runs["status"] == "finished"]
    base = (lambda s: s.split("@")[0]) if tuned else (lambda s: s)
    runs = {}  # (base schedule, group) -> one row per trained run
    for group, df in groups.items():
        if df.empty:
            continue
        for name, d in df.groupby(df["schedule"].map(base)):
            runs[name, group] = d.sort_values("budget").groupby("run").tail(1)
    has_shared = all("shared_epochs" in d and "trained_seconds" in d for d in runs.values())
    seconds = lambda d: d["trained_seconds"] if has_shared else d["seconds"]  # noqa: E731
    shared = lambda d: int(d["shared_epochs"].sum()) if has_shared else 0  # noqa: E731
    listed = tuned_order(res) if tuned else []
    order = [s for s in listed + [s for s in res.order if s not in listed]
             if any(k[0] == s for k in runs)]
    rows, totals, shared_total = [], dict.fromkeys(groups, 0.0), 0
    for s in order:
        parts = {g: runs[s, g] for g in groups if (s, g) in runs}
        every = pd.concat(parts.values())
        for g, d in parts.items():
            totals[g] += seconds(d).sum()
        shared_total += shared(every)
        if tuned:
            count = " + ".join(str(len(parts[g])) if g in parts else "0"
                               for g in ("tuning", "evaluation") if g in groups)
            spent = " + ".join(duration(seconds(parts[g]).sum()) if g in parts else "0"
                               for g in ("tuning", "evaluation") if g in groups)
        else:
            count, spent = str(len(every)), duration(seconds(every).sum())
        per_epoch = pd.concat([groups[g][groups[g]["schedule"].map(base) == s]
                               for g in parts])["seconds_per_epoch"].mean()
        rows.append([code(s), f"{per_epoch:.2f}", count, str(shared(every)), spent])
    total = sum(totals.values())
    if tuned and "tuning" in groups:
        headers = ["schedule", "s / epoch", "runs (tuning + evaluation)", "epochs shared",
                   "training time (tuning + evaluation)"]
        split = (f" ({duration(totals['tuning'])} tuning every point of the search space on "
                 f"the tuning seeds, {duration(totals['evaluation'])} evaluating; finished "
                 "runs only)")
    else:
        headers = ["schedule", "s / epoch", "runs", "epochs shared", "training time"]
        split = ""
    return ("## Time\n\nSeconds per epoch include validation and test evaluation. A schedule "
            "whose lr path does not depend on the budget is trained once per seed to the "
            "longest budget and its shorter budgets are read off that run. Runs that follow "
            "the same lr path for their first epochs train those epochs once: a run forks "
            "from the shared trunk where its path leaves it, with records identical to a run "
            "trained alone (epochs shared).\n\n"
            + md_table(headers, rows)
            + f"\n\nTraining time summed over runs: {duration(total)}{split}, with "
            f"{shared_total} epochs taken from shared trunks (the wall time is shorter when "
            "runs train in parallel with `jobs`).")


def status_section(res: Results) -> str:
    bad = res.summary[res.summary["status"] != "finished"]
    if bad.empty:
        return "All runs finished."
    rows = []
    for _, r in bad.iterrows():
        detail = ""
        if r["status"] == "diverged" and not pd.isna(r.get("diverged_epoch")):
            detail = f"diverged at epoch {int(r['diverged_epoch'])}"
        rows.append([code(r["schedule"]), str(r["budget"]), str(r["seed"]), md_text(r["status"]),
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


def own_settings_section(res: Results, view: Results) -> str:
    """In a tuned experiment, the schedules at their own settings, labelled so, when every
    schedule's own runs are there (a partial set would mislead; the tuned table shows what
    there is)."""
    if not res.tuning or view is res:
        return ""
    bases = [s for s in res.order if s in res.tuning.get("schedules", {})]
    complete = bases and all(per_seed(res, s, b) for s in bases for b in view.budgets)
    if not complete:
        return ""
    return mae_table(res, "test_mae", "Own settings (not tuned): final test MAE (" + (
        "one seed)" if len(res.seeds) == 1 else "mean ± std over seeds)"),
        "Each schedule at the lr and weight decay its definition names, on the same "
        "evaluation seeds: for scale only; every verdict above is on the tuned runs.")


def render(res: Results, figures: dict[str, str], command: str | None = None,
           judging: Judging | None = None) -> str:
    """The whole report as markdown; ``command`` is the one that regenerates it, ``judging``
    the settings the verdicts use. In a tuned experiment every headline section is made from
    the tuned view (each schedule at its chosen setting), never from own-settings runs."""
    judging = judging or Judging()
    view = headline_view(res)
    tuned = view is not res
    verdicts = {b: judge_budget(view, b, judging) for b in view.budgets}
    one_seed = len(view.seeds) == 1
    spread = "one seed" if one_seed else "mean ± std over seeds"
    label = ", each schedule tuned" if tuned else ""
    sections = [
        title(view, command, tuned),
        answer_section(view, verdicts, tuned),
        setup_section(res, judging),
        status_section(res),
        note_study.claims_section(res, view, verdicts),
        tuned_section(res, view, verdicts),
        figures_section({k: v for k, v in figures.items() if k == "sensitivity"}, one_seed),
        comparison_section(view, verdicts, tuned),
        figures_section({k: v for k, v in figures.items() if k == "lr"}, one_seed),
        mae_table(view, "test_mae", f"Final test MAE{label} ({spread})",
                  "Bold: lowest per budget. Historical average and persistence need no "
                  "training and are shown for scale."),
        figures_section({k: v for k, v in figures.items() if k in ("mae", "final")},
                        one_seed),
        mae_table(view, "best_test_mae",
                  f"Test MAE at the best-validation epoch{label} ({spread})",
                  "Early stopping on validation MAE within each budget, as a practitioner "
                  "would select a checkpoint."),
        own_settings_section(res, view),
        note_study.ablation_section(res, judging),
        horizon_tables(view),
        schedules_section(view),
        timing_section(res),
        environment_section(res),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"

"""The report as pure functions: ``Results`` (+ figure file names) in, markdown text out.

Nothing here touches the file system or matplotlib; ``bench.figures`` draws the PNGs and
``bench.report_cmd`` writes both. Every number in the text is computed from ``summary.csv``,
``epochs.csv`` and ``baselines.csv`` of one experiment folder.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.results import Results
from bench.stats import epochs_to_reach, mean_std, paired_relative_change

REFERENCE = "plateau"  # the tuning note's original configuration
PROPOSAL = "multistep"  # the note's proposal
ABLATION = {  # (schedule, optimizer settings) -> schedule name
    ("Plateau", "lr 5e-4, wd 0"): "plateau",
    ("Plateau", "lr 1e-3, wd 5e-4"): "plateau_lr1e-3_wd5e-4",
    ("MultiStepLR", "lr 5e-4, wd 0"): "multistep_lr5e-4_wd0",
    ("MultiStepLR", "lr 1e-3, wd 5e-4"): "multistep",
}
NOTE_PREDICTIONS = {30: (4.6, 4.8), 60: (4.3, 4.5), 100: (4.0, 4.2)}
BASELINE_LABELS = {"historical_average": "historical average", "persistence": "persistence"}


# -- formatting ---------------------------------------------------------------------------
def md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join(marks[a] for a in align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def f3(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def pm(values) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    m, s = mean_std(values)
    return f"{m:.3f} ± {s:.3f}" if len(values) > 1 else f"{m:.3f}"


def pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def lr_text(x: float) -> str:
    return f"{x:.2g}" if x else "0"


def duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


# -- lookups ------------------------------------------------------------------------------
def per_seed(res: Results, schedule: str, budget: int, column: str = "test_mae"
             ) -> dict[int, float]:
    df = res.finished()
    df = df[(df["schedule"] == schedule) & (df["budget"] == budget)]
    return {int(s): float(v) for s, v in zip(df["seed"], df[column])}


def curve(res: Results, schedule: str, budget: int, column: str, seed: int | None = None
          ) -> list[float]:
    """Mean over seeds (or one seed) of an epoch column."""
    df = res.epochs[(res.epochs["schedule"] == schedule) & (res.epochs["budget"] == budget)]
    if seed is not None:
        df = df[df["seed"] == seed]
    return df.groupby("epoch")[column].mean().tolist()


def baseline(res: Results, name: str, split: str = "test", column: str = "mae") -> float | None:
    b = res.baselines
    if b.empty:
        return None
    row = b[(b["baseline"] == name) & (b["split"] == split)]
    return float(row[column].iloc[0]) if len(row) else None


def ranking(res: Results, budget: int, column: str = "test_mae") -> list[tuple[str, float]]:
    out = []
    for s in res.schedule_order:
        vals = per_seed(res, s, budget, column)
        if vals:
            out.append((s, float(np.mean(list(vals.values())))))
    return sorted(out, key=lambda t: t[1])


# -- sections -----------------------------------------------------------------------------
def header(res: Results) -> str:
    exp = res.experiment
    ds = exp.get("dataset", {})
    model = exp.get("model", {})
    train = exp.get("train", {})
    opts = ", ".join(f"{k}={v}" for k, v in ds.get("options", {}).items())
    mopts = ", ".join(f"{k}={v}" for k, v in model.get("options", {}).items())
    params = res.run_config.get("parameters")
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
        f"- **Model**: `{model.get('name')}`" + (f" ({mopts})" if mopts else "")
        + (f", {params:,} parameters" if params else "")
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
        rows.append([f"`{s}`", info["spec"]["kind"], info["hyperparameters"], stepped,
                     info["summary"]])
    return "## Schedules\n\n" + md_table(["schedule", "kind", "settings", "stepped", "what"],
                                         rows, "lllll")


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


def comparison_section(res: Results) -> str:
    if REFERENCE not in res.schedule_order:
        return ("## Against the original configuration\n\nThe reference schedule "
                f"`{REFERENCE}` is not in this experiment, so no paired comparison is made.")
    parts = ["## Against the original configuration (`plateau`), paired by seed",
             "Relative change of final test MAE against `plateau` with the same seed "
             "(negative is better), its mean over seeds with a bootstrap 95 % interval, and "
             "the seeds on which the schedule beat `plateau`. With few seeds the interval is "
             "coarse: an interval that straddles 0 means no detectable difference."]
    for b in res.budgets:
        ref = per_seed(res, REFERENCE, b)
        rows = []
        for rank, (s, mean) in enumerate(ranking(res, b), 1):
            if s == REFERENCE:
                rows.append([str(rank), f"`{s}`", f3(mean), "reference", "–"])
                continue
            cmp = paired_relative_change(per_seed(res, s, b), ref)
            if cmp is None:
                rows.append([str(rank), f"`{s}`", f3(mean), "no shared seeds", "–"])
                continue
            rows.append([str(rank), f"`{s}`", f3(mean),
                         f"{pct(cmp['mean'])} [{pct(cmp['lo'])}, {pct(cmp['hi'])}]",
                         f"{cmp['wins']}/{cmp['n']}"])
        parts.append(f"### {b} epochs (ranked by mean final test MAE)\n\n"
                     + md_table(["rank", "schedule", "test MAE", "vs plateau (95 % CI)",
                                 "wins"], rows))
    return "\n\n".join(parts)


def ablation_section(res: Results) -> str:
    if not all(name in res.schedule_order for name in ABLATION.values()):
        return ("## What the gain is made of\n\nRun the `ablation` group "
                "(`--schedules ablation`) to separate the schedule from the lr and weight decay.")
    parts = ["## What the gain is made of: schedule versus lr and weight decay",
             "The note changed three things at once. The 2 × 2 below crosses the schedule "
             "(Plateau, MultiStepLR) with the optimizer settings (lr 5e-4 without weight "
             "decay, as originally; lr 1e-3 with weight decay 5e-4, as proposed), all on mean "
             "final test MAE (negative is better). The note's change is the diagonal; the "
             "schedule effect holds the settings fixed, the settings effect holds the "
             "schedule fixed."]
    settings = ["lr 5e-4, wd 0", "lr 1e-3, wd 5e-4"]
    for b in res.budgets:
        m = {k: np.mean(list(per_seed(res, v, b).values()) or [np.nan])
             for k, v in ABLATION.items()}
        rows = [[sched] + [f3(m[(sched, st)]) for st in settings]
                for sched in ("Plateau", "MultiStepLR")]
        total = m[("MultiStepLR", settings[1])] - m[("Plateau", settings[0])]
        sched_eff = [m[("MultiStepLR", st)] - m[("Plateau", st)] for st in settings]
        set_eff = [m[(sc, settings[1])] - m[(sc, settings[0])] for sc in ("Plateau", "MultiStepLR")]
        parts.append(
            f"### {b} epochs\n\n"
            + md_table(["schedule \\ settings"] + settings, rows)
            + f"\n\nThe note's change (plateau → multistep): **{total:+.3f}**. Schedule effect "
            f"(Plateau → MultiStepLR): {sched_eff[0]:+.3f} at the original settings, "
            f"{sched_eff[1]:+.3f} at the proposed ones. Settings effect (original → proposed): "
            f"{set_eff[0]:+.3f} under Plateau, {set_eff[1]:+.3f} under MultiStepLR.")
    return "\n\n".join(parts)


def _lr_at(res: Results, schedule: str, epoch: int) -> float | None:
    df = res.epochs[(res.epochs["schedule"] == schedule) & (res.epochs["epoch"] == epoch)]
    if df.empty:
        return None
    return float(df.groupby("budget")["lr"].mean().iloc[-1])


def convergence_verdict(speed: float | None) -> str:
    """Verdict on "2x faster": the measured ratio of epochs-to-target, plateau over multistep."""
    if speed is None:
        return "not measured (target not reached)"
    if speed >= 2:
        return "confirmed"
    if speed >= 1.5:
        return f"partly: faster, {speed:.2f}× not 2×"
    return "refuted: not faster" if speed <= 1 else f"refuted: only {speed:.2f}× faster"


def claims_section(res: Results) -> str:
    """The tuning note's claims beside the measurements, each with a verdict."""
    rows = []
    have = set(res.schedule_order)
    longest = max(res.budgets)

    if PROPOSAL in have:
        expect = {29: 1e-3, 30: 1e-4, 60: 1e-5, 90: 1e-6}
        got = {e: _lr_at(res, PROPOSAL, e) for e in expect}
        measured = ", ".join(f"ep {e}: {lr_text(v)}" for e, v in got.items() if v is not None)
        ok = all(v is not None and math.isclose(v, expect[e], rel_tol=1e-6)
                 for e, v in got.items())
        partial = any(v is None for v in got.values())
        rows.append(["MultiStepLR lr is 1e-3 for epochs 0–29, 1e-4 from 30, 1e-5 from 60, "
                     "1e-6 from 90", measured or "–",
                     "confirmed" if ok else ("not measured (budget too short)" if partial
                                             else "refuted")])
        if 30 in res.budgets:
            lr30 = per_seed(res, PROPOSAL, 30, "final_lr")
            never = lr30 and all(math.isclose(v, 1e-3) for v in lr30.values())
            rows.append(["a 30-epoch MultiStepLR run decays at epoch 30 (\"lr drops to 1e-4 at "
                         "epoch 30, watch the log\")",
                         "last epoch of a 30-epoch run is 29; lr stays "
                         f"{lr_text(next(iter(lr30.values()))) if lr30 else '?'} throughout",
                         "refuted: the milestone lies outside the budget" if never else
                         "confirmed"])

    if REFERENCE in have:
        lr20 = _lr_at(res, REFERENCE, 20)
        lr0 = _lr_at(res, REFERENCE, 0)
        if lr20 is not None and lr0:
            ratio = lr20 / lr0
            rows.append(["under Plateau the lr collapses to near zero around epoch 20",
                         f"lr at epoch 20: {lr_text(lr20)} ({100 * ratio:.0f} % of "
                         f"{lr_text(lr0)}, mean over seeds)",
                         "confirmed" if ratio <= 0.01 else
                         ("partly: reduced, not near zero" if ratio < 1 else "refuted")])
            vc = curve(res, REFERENCE, longest, "test_mae")
            if len(vc) > 21:
                gain = vc[20] - vc[-1]
                rows.append(["under Plateau test MAE stalls after epoch 20",
                             f"test MAE {f3(vc[20])} at epoch 20 → {f3(vc[-1])} at epoch "
                             f"{len(vc) - 1} ({gain:+.3f})",
                             "confirmed" if abs(gain) < 0.01 * vc[20] else
                             ("refuted: still improving" if gain > 0 else
                              "refuted: it gets worse (overfits)")])

    if REFERENCE in have and PROPOSAL in have:
        for b in sorted(res.budgets):
            cmp = paired_relative_change(per_seed(res, PROPOSAL, b), per_seed(res, REFERENCE, b))
            if cmp is None:
                continue
            if b == longest:
                claim = f"MultiStepLR is 20–25 % better than Plateau at {b} epochs"
                if cmp["hi"] <= -0.20:
                    verdict = "confirmed"
                elif cmp["lo"] > -0.20:
                    verdict = ("refuted" + (": MultiStepLR is worse" if cmp["lo"] > 0 else
                                            ": the gain is smaller"))
                else:
                    verdict = "undecided (interval includes −20 %)"
                rows.append([claim, f"{pct(cmp['mean'])} [{pct(cmp['lo'])}, {pct(cmp['hi'])}], "
                             f"wins {cmp['wins']}/{cmp['n']}", verdict])
        prop = curve(res, PROPOSAL, longest, "val_mae")
        ref = curve(res, REFERENCE, longest, "val_mae")
        if prop and ref:
            target = 1.01 * max(min(ref), min(prop))
            e_ref, e_prop = epochs_to_reach(ref, target), epochs_to_reach(prop, target)
            speed = e_ref / e_prop if e_ref and e_prop else None
            rows.append(["MultiStepLR converges 2× faster",
                         f"epochs to a val MAE of {f3(target)} (within 1 % of the worse best): "
                         f"plateau {e_ref}, multistep {e_prop}"
                         + (f" → {speed:.2f}×" if speed else ""),
                         convergence_verdict(speed)])
        for b in sorted(res.budgets):
            r = ranking(res, b)
            names = [s for s, _ in r]
            if PROPOSAL in names:
                pos = names.index(PROPOSAL) + 1
                rows.append([f"MultiStepLR ranks first ({b} epochs)",
                             f"rank {pos} of {len(names)}; first: `{names[0]}`",
                             "confirmed" if pos == 1 else "refuted"])
        for b, (lo, hi) in NOTE_PREDICTIONS.items():
            if b in res.budgets:
                vals = per_seed(res, PROPOSAL, b)
                if vals:
                    m = np.mean(list(vals.values()))
                    real = res.experiment.get("dataset", {}).get("name") == "metr-la"
                    inside = lo <= m <= hi
                    rows.append([f"MultiStepLR test MAE {lo}–{hi} after {b} epochs "
                                 "(METR-LA)", f3(m),
                                 ("confirmed" if inside else "refuted") if real else
                                 "not comparable: other data than METR-LA"])
    if not rows:
        return ""
    return ("## The tuning note's claims, checked\n\n"
            "Each claim of the note next to what this experiment measured. Means are over "
            "seeds; intervals are bootstrap 95 % over paired seeds.\n\n"
            + md_table(["claim", "measured", "verdict"], rows, "lll"))


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
        claims_section(res),
        figures_section({k: v for k, v in figures.items() if k == "lr"}),
        mae_table(res, "test_mae", "Final test MAE (mean ± std over seeds)",
                  "Bold: best mean per budget. Historical average and persistence need no "
                  "training and are shown for scale."),
        figures_section({k: v for k, v in figures.items() if k != "lr"}),
        mae_table(res, "best_test_mae", "Test MAE at the best-validation epoch",
                  "Early stopping on validation MAE within each budget, as a practitioner "
                  "would select a checkpoint."),
        comparison_section(res),
        ablation_section(res),
        horizon_tables(res),
        schedules_section(res),
        timing_section(res),
        environment_section(res),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"

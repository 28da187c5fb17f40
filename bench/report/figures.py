"""The only module that imports matplotlib: PNG figures for the report (Agg backend)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False  # names and units from files are plain text
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench.escape import visible  # noqa: E402
from bench.report.results import Results, baseline, dataset_title, units  # noqa: E402
from bench.store import atomic_write_bytes  # noqa: E402

SEED_SCHEDULES = ("plateau", "multistep", "warmup_cosine")
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#7f7f7f", "#ff7f0e", "#9467bd", "#8c564b",
           "#e377c2", "#17becf", "#bcbd22", "#393b79", "#637939", "#843c39", "#7b4173"]


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight",
                metadata={"Software": None})  # no version stamp: regenerated files compare equal
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _subject(res: Results) -> str:
    """``stid on sz-taxi (experiment sz-taxi)``: what a figure shows, without machine paths."""
    model = visible(res.experiment.get("model", {}).get("name", "?"), 80)
    return f"{model} on {dataset_title(res)} (experiment {res.name})"


def _colors(res: Results) -> dict[str, str]:
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(res.schedule_order)}


def _style(name: str) -> dict:
    name = name.split(" = ")[0]  # merged rows (identical runs) take their first schedule's
    return {"linewidth": 2.2 if name in SEED_SCHEDULES else 1.2,
            "linestyle": "-" if name in SEED_SCHEDULES or "_" not in name else "--"}


def _legend(fig, axes) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               fontsize=9)


def lr_figure(res: Results, path: Path) -> None:
    budgets = res.budgets
    colors = _colors(res)
    fig, axes = plt.subplots(1, len(budgets), figsize=(5 * len(budgets), 4), squeeze=False,
                             sharey=True)
    axes = axes[0]
    for ax, b in zip(axes, budgets):
        for s in res.schedule_order:
            df = res.epochs[(res.epochs["schedule"] == s) & (res.epochs["budget"] == b)]
            if df.empty:
                continue
            metric_driven = res.schedules[s]["needs_metric"]
            seeds = sorted(df["seed"].unique()) if metric_driven else [df["seed"].min()]
            for i, seed in enumerate(seeds):
                d = df[df["seed"] == seed].sort_values("epoch")
                # Append the last epoch's end so the final step is drawn to full width.
                x = np.append(d["epoch"].to_numpy(), d["epoch"].max() + 1)
                y = np.append(d["lr"].to_numpy(), d["lr"].iloc[-1])
                style = _style(s)
                if metric_driven and len(seeds) > 1:
                    style["linewidth"] *= 0.7
                ax.step(x, y, where="post", color=colors[s], alpha=0.9,
                        label=s if i == 0 else None, **style)
        ax.set_yscale("log")
        ax.set_title(f"{b}-epoch budget")
        ax.set_xlabel("epoch")
        ax.set_xlim(0, b)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("learning rate (log scale)")
    fig.suptitle(f"Learning-rate paths: {_subject(res)}")
    _legend(fig, axes)
    fig.tight_layout()
    _save(fig, path)


def mae_figure(res: Results, path: Path) -> None:
    budgets = res.budgets
    colors = _colors(res)
    fig, axes = plt.subplots(2, len(budgets), figsize=(5 * len(budgets), 7.5), squeeze=False)
    for row, split in enumerate(("val", "test")):
        tails = []
        for col, b in enumerate(budgets):
            ax = axes[row][col]
            for s in res.schedule_order:
                df = res.epochs[(res.epochs["schedule"] == s) & (res.epochs["budget"] == b)]
                if df.empty:
                    continue
                g = df.groupby("epoch")[f"{split}_mae"]
                mean, std = g.mean(), g.std().fillna(0.0)
                ax.plot(mean.index, mean.values, color=colors[s], label=s, **_style(s))
                ax.fill_between(mean.index, mean - std, mean + std, color=colors[s], alpha=0.12,
                                linewidth=0)
                tails.extend(mean.values[min(3, len(mean) - 1):])
            ax.set_title(f"{split} MAE, {b}-epoch budget")
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"{split} MAE ({units(res)})")
            ax.set_xlim(0, b)
            ax.grid(True, alpha=0.3)
        if not tails:  # no run has an epoch to draw (all diverged at epoch 0): empty axes
            continue
        # Scale to where the schedules differ; the first epochs and distant baselines would
        # flatten every curve into one line.
        lo, hi = float(np.nanmin(tails)), float(np.nanpercentile(tails, 97))
        # A baseline below every curve is the finding that matters: keep it in view.
        below = [v for n in ("historical_average", "persistence")
                 if (v := baseline(res, n, split)) is not None and v < lo]
        lo = min([lo, *below])
        pad = 0.08 * (hi - lo) or 0.01 * abs(hi) or 0.01
        lo, hi = lo - pad, hi + pad
        for ax in axes[row]:
            for name, ls in (("historical_average", ":"), ("persistence", "--")):
                v = baseline(res, name, split)
                if v is None:
                    continue
                # One legend (built from the first row) names both splits' values; a line is
                # drawn only where it falls inside the axis.
                label = None
                if row == 0 and ax is axes[0][0]:
                    vals = [baseline(res, name, sp) for sp in ("val", "test")]
                    label = f"{name.replace('_', ' ')} (" + ", ".join(
                        f"{sp} {x:.2f}" for sp, x in zip(("val", "test"), vals)
                        if x is not None) + ")"
                if v <= hi:
                    ax.axhline(v, color="black", linestyle=ls, linewidth=1, label=label)
                elif label:
                    ax.plot([], [], color="black", linestyle=ls, linewidth=1,
                            label=label + ", off scale")
            ax.set_ylim(lo, hi)
    spread = "one seed" if len(res.seeds) == 1 else "mean ± std over seeds"
    fig.suptitle(f"MAE during training, {spread}: {_subject(res)}")
    _legend(fig, axes[0])
    fig.tight_layout()
    _save(fig, path)


def final_figure(res: Results, path: Path) -> None:
    budgets = res.budgets
    names = res.schedule_order
    colors = _colors(res)
    fig, axes = plt.subplots(1, len(budgets), figsize=(5 * len(budgets), 0.35 * len(names) + 2),
                             squeeze=False, sharey=True)
    df = res.finished()
    for ax, b in zip(axes[0], budgets):
        for i, s in enumerate(names):
            v = df[(df["schedule"] == s) & (df["budget"] == b)]["test_mae"].to_numpy()
            if not len(v):
                continue
            ax.barh(i, v.mean(), color=colors[s], alpha=0.35)
            ax.plot(v, np.full(len(v), i), "o", color=colors[s], markersize=4)
        # Bars start at zero, so their lengths compare; the baselines are always drawn.
        right = list(df[df["budget"] == b]["test_mae"])
        for name, ls in (("historical_average", ":"), ("persistence", "--")):
            bv = baseline(res, name)
            if bv is not None:
                ax.axvline(bv, color="black", linestyle=ls, linewidth=1.2,
                           label=f"{name.replace('_', ' ')} ({bv:.2f})")
                right.append(bv)
        if right:
            ax.set_xlim(0, 1.08 * max(right))
        ax.set_title(f"{b}-epoch budget")
        ax.set_xlabel(f"final test MAE ({units(res)})")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(names)))
    axes[0][0].set_yticklabels(names)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"Final test MAE by seed: {_subject(res)}")
    fig.tight_layout()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2,
               frameon=False, fontsize=9)
    _save(fig, path)


def write_figures(res: Results, out_dir: Path, view: Results | None = None) -> dict[str, str]:
    """Draw every figure into ``out_dir``; return key -> file name for the markdown. The
    curves come from ``view`` (in a tuned experiment the tuned view, as every headline),
    the lr sensitivity from ``res``'s tuning record."""
    view = view if view is not None else res
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"lr": "lr.png", "mae": "mae.png", "final": "final_mae.png"}
    lr_figure(view, out_dir / files["lr"])
    mae_figure(view, out_dir / files["mae"])
    final_figure(view, out_dir / files["final"])
    if res.tuning:
        files["sensitivity"] = "lr_sensitivity.png"
        sensitivity_figure(res, out_dir / files["sensitivity"])
    return files


def sensitivity_figure(res: Results, path: Path) -> None:
    """Mean final validation MAE over the tuning seeds against the peak lr, per schedule
    (one panel per budget; with a weight-decay grid, the best weight decay at each lr)."""
    t = res.tuning
    budgets = sorted(int(b) for per in t["schedules"].values() for b in per)
    budgets = sorted(set(budgets))
    names = [s for s in res.order if s in t["schedules"]]
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(names)}
    fig, axes = plt.subplots(1, len(budgets), figsize=(5 * len(budgets), 4), squeeze=False,
                             sharey=True)
    for ax, b in zip(axes[0], budgets):
        for s in names:
            c = t["schedules"][s].get(str(b))
            if not c:
                continue
            best: dict[float, float] = {}
            for point, v in c["val_mae"].items():
                lr = t["settings"].get(point, {}).get("lr")
                if v is None or lr is None:
                    continue
                best[lr] = min(v, best.get(lr, float("inf")))
            if not best:
                continue
            lrs = sorted(best)
            ax.plot(lrs, [best[x] for x in lrs], marker="o", color=colors[s], label=s, **_style(s))
            if c["chosen"] in t["settings"]:
                ax.plot([t["settings"][c["chosen"]]["lr"]], [c["val_mae"][c["chosen"]]], "*",
                        color=colors[s], markersize=12)
        ax.set_xscale("log")
        grid = sorted({v["lr"] for v in t["settings"].values()})
        ax.set_xticks(grid, [f"{v:g}" for v in grid])
        ax.minorticks_off()
        ax.set_title(f"{b}-epoch budget")
        ax.set_xlabel("peak learning rate (log scale)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(f"final val MAE, tuning seeds ({units(res)})")
    fig.suptitle(f"Sensitivity to the learning rate (star: chosen): {_subject(res)}")
    _legend(fig, axes[0])
    fig.tight_layout()
    _save(fig, path)


def performance_profile_figure(ratios: dict[int, dict[str, list[float]]], order: list[str],
                               path: Path, tau_max: float = 1.25,
                               title: str = "Performance profile",
                               xlabel: str = "τ (ratio to the best mean final test MAE)",
                               ylabel: str = "share of experiments within τ of the best"
                               ) -> None:
    """AlgoPerf-style performance profile: per budget (one panel) and schedule (one curve),
    the share of experiments in which the schedule's ratio to the best is at most τ.
    ``ratios`` maps budget -> schedule -> ratio per experiment (inf where it did not run or,
    for epochs to a target, did not reach it)."""
    budgets = sorted(ratios)
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(order)}
    taus = np.linspace(1.0, tau_max, 501)
    fig, axes = plt.subplots(1, len(budgets), figsize=(5 * len(budgets), 4), squeeze=False,
                             sharey=True)
    axes = axes[0]
    for ax, b in zip(axes, budgets):
        for s, values in ratios[b].items():
            r = np.asarray(values, dtype=float)
            share = (r[None, :] <= taus[:, None] * (1 + 1e-12)).mean(axis=1)
            ax.step(taus, share, where="post", color=colors.get(s, "black"), label=s,
                    **_style(s))
        ax.set_title(f"{b}-epoch budget")
        ax.set_xlabel(xlabel)
        ax.set_xlim(1.0, tau_max)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(ylabel)
    fig.suptitle(title)
    labelled = {}  # every panel's curves: a schedule may run at some budgets only
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labelled.setdefault(label, handle)
    fig.legend(list(labelled.values()), list(labelled), loc="center left",
               bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)
    fig.tight_layout()
    _save(fig, path)

"""``python -m bench perf``: the suite's grid against the naive reference, in one invocation.

The naive way (``bench.perf.naive``) is one process per cell, windows materialised up front
and fed through a ``DataLoader``, evaluation with autograd on, no reuse between budgets. The
suite's way is ``bench run``: windows cut by index from resident tensors, evaluation under
``inference_mode``, budget-independent schedules trained once to the longest budget.
Records of every cell are compared for identity (``bench.perf.grid``); the memory of the
data pipeline, the time of each part of an epoch and the levers per step are measured
beside it (``bench.perf.levers``), and one training step is set against the machine's own
limit: its counted FLOPs per second over the measured ``torch.mm`` rate at the step's dominant
shape (``bench.perf.limits``). Results are reported as ratios measured in the same run.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.config import ConfigError
from bench.perf.grid import grid_timing, pipeline_memory, ray_overhead
from bench.perf.levers import (
    epoch_breakdown,
    lever_timings,
    model_speed,
    precision_effect,
)
from bench.perf.limits import against_limit, render_limits
from bench.profile import load_resolved, profile_path
from bench.report.markdown import md_table
from bench.store import atomic_write_json, atomic_write_text

FUSE = (4,)  # runs stacked in the full report's fused rows (``--fuse`` is for ``--levers``)


def render(result: dict) -> str:
    g, m, b = result["grid"], result["memory"], result["breakdown"]
    rows = [
        [f"naive reference (process per cell, materialised windows, DataLoader, autograd "
         f"eval, no budget reuse; {g['jobs']} at a time)", f"{g['naive_seconds']:.1f}",
         str(g["naive_epochs"]), "1.000"],
        [f"suite (`bench run`, --jobs {g['jobs']}: budgets folded, shared trunks trained "
         f"once)", f"{g['suite_seconds']:.1f}", str(g["suite_epochs"]), f"{g['ratio']:.3f}"],
    ]
    saved = g.get("trunk_epochs_saved")
    parts = [[k, f"{v * 1000:.1f}", f"{100 * v / b['total']:.1f} %"]
             for k, v in b["seconds"].items()]
    levers = [[r["lever"], str(r["threads"]), f"{r['ms_per_step']:.2f}", f"{r['ratio']:.2f}"]
              for r in result["levers"]]
    return "\n".join([
        f"# Performance: profile `{result['profile']}`",
        "",
        f"Measured by `{result['command']}` on {result['machine']} "
        f"({result['cpu_count']} CPUs, torch {result['torch']}), {result['date']}.",
        "",
        "## Whole grid, wall time",
        "",
        md_table(["way", "seconds", "epochs trained", "ratio"], rows),
        "",
        f"Schedules {', '.join(g['schedules'])}; budgets {g['budgets']}; seeds {g['seeds']}. "
        f"Records identical in {g['identical_cells']} of {g['cells']} cells "
        f"(largest relative difference {g['max_relative_difference']:.2e}).",
        *([] if saved is None else [
            "",
            f"Folding budgets alone would train {g['folded_epochs']} epochs; shared trunks "
            f"saved {saved} more ({saved / g['folded_epochs']:.1%}), so the suite trained "
            f"{g['suite_epochs'] / g['naive_epochs']:.3f} of the naive reference's epochs."]),
        "",
        "## Data pipeline memory at full METR-LA size",
        "",
        md_table(["pipeline", "peak MB"], [
            ["windows cut by index (suite)", f"{m['indexed'] / 2**20:.0f}"],
            ["windows materialised (naive)", f"{m['materialised'] / 2**20:.0f}"]]),
        "",
        f"{m['steps']} steps × {m['nodes']} sensors; ratio {m['ratio']:.3f}.",
        "",
        f"## Where an epoch's time goes ({b['model']}, {b['device']}, {b['threads']} threads, "
        f"{b['steps']} steps)",
        "",
        md_table(["part", "ms / epoch", "share"], parts),
        "",
        "## Levers, per training step of one run",
        "",
        md_table(["lever", "threads", "ms / step", "ratio"], levers),
        "",
        *([render_limits(result["limits"]), ""] if result.get("limits") else []),
        "## Ratios",
        "",
        f"- whole-grid wall time, suite / naive: **{g['ratio']:.3f}**",
        f"- epochs trained, suite / naive: **{g['suite_epochs'] / g['naive_epochs']:.3f}**",
        f"- data-pipeline peak memory, indexed / materialised: **{m['ratio']:.3f}**",
        *[f"- {r['path']}: achieved / matmul rate at its dominant shape: **{r['ratio']:.3f}**"
          for r in result.get("limits", []) if "ratio" in r],
        "",
    ])


def render_effect(rows: list[dict]) -> str:
    """The arithmetic levers' effect on a run's final test MAE (``precision_effect``)."""
    first = rows[0]
    return "\n".join([
        f"## Effect on results ({first['epochs']} epochs, constant schedule, seed "
        f"{first['seed']}, {first.get('threads', '?')} thread(s))",
        "",
        md_table(["arithmetic", "final test MAE", "vs float32", "seconds"],
                 [[r["arithmetic"], f"{r['test_mae']:.4f}",
                   f"{100 * r['relative_difference']:+.3f} %", f"{r['seconds']:.1f}"]
                  for r in rows]),
        "",
        "The second float32 run is the noise floor: zero where runs are bit-reproducible "
        "(CPU), the size of kernel nondeterminism on a GPU."])


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs)"


def _measured_by(args, where: str) -> str:
    """The first paragraph of a perf file: the command, the date and the machine."""
    return (f"Measured by `python -m bench perf {' '.join(args.argv)}`, "
            f"{time.strftime('%Y-%m-%d')}, {where}.\n\n")


def cmd_perf(args) -> int:
    if args.ray:
        r = ray_overhead(str(profile_path(args.profile)))
        text = (_measured_by(args, f"{os.cpu_count()} CPUs")
                + md_table(["executor", "seconds", "runs"],
                           [["local", f"{r['local_seconds']:.1f}", str(r["runs"])],
                            ["ray (local instance, started by the command)",
                             f"{r['ray_seconds']:.1f}", str(r["runs"])]])
                + f"\n\nOverhead per run: {r['overhead_per_run']:.2f} s (including Ray's "
                f"start-up, spread over the runs).\n")
        print(text)
        atomic_write_text(Path(args.out) / "perf" / "ray.md", text)
        return 0
    if args.levers:
        try:
            fuse = tuple(int(k) for k in args.fuse.split(","))
        except ValueError:
            raise ConfigError(f"--fuse: expected run counts like 4,16, got {args.fuse!r}") from None
        if min(fuse) < 1:
            raise ConfigError(f"--fuse: run counts must be at least 1, got {args.fuse!r}")
        rows = lever_timings(str(profile_path(args.profile)), fuse=fuse, device=args.device)
        limits = against_limit(str(profile_path(args.profile)), fuse=fuse, device=args.device)
        effect = precision_effect(str(profile_path(args.profile)), device=args.device)
        table = md_table(["lever", "threads", "ms / step", "ratio"],
                         [[r["lever"], str(r["threads"]), f"{r['ms_per_step']:.2f}",
                           f"{r['ratio']:.2f}"] for r in rows])
        name = f"levers-{profile_path(args.profile).stem}-{rows[0]['device'].split(':')[0]}"
        where = f"{_device_name(rows[0]['device'])}, torch {torch.__version__}"
        text = (_measured_by(args, where) + f"{table}\n\n{render_limits(limits)}\n\n"
                + render_effect(effect) + "\n")
        print(text)
        out = Path(args.out) / "perf"
        atomic_write_text(out / f"{name}.md", text)
        atomic_write_json(out / f"{name}.json", {
            "profile": profile_path(args.profile).stem,
            "command": "python -m bench perf " + " ".join(args.argv), "device": where,
            "date": time.strftime("%Y-%m-%d"), "levers": rows, "limits": limits,
            "precision_effect": effect})
        return 0
    if args.models:
        rows = model_speed(args.dataset, {"nodes": 207, "days": 7, "seed": 0}
                           if args.dataset == "synthetic-la" else {}, args.data_dir,
                           device=args.device)
        table = md_table(
            ["model", "parameters", "train s / epoch", "eval s / epoch", "train windows",
             "sensors", "threads"],
            [[r["model"], f"{r['parameters']:,}", f"{r['train_seconds']:.2f}",
              f"{r['eval_seconds']:.2f}", str(r["windows"]), str(r["nodes"]), str(r["threads"])]
             for r in rows])
        print(table)
        out = Path(args.out) / "perf"
        atomic_write_json(out / "models.json", rows)
        atomic_write_text(out / "models.md", _measured_by(
            args, f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
            + f"{table}\n")
        return 0
    profile_name = profile_path(args.profile).stem
    profile = load_resolved(args.profile)
    seeds = profile.seeds if args.seeds is None else tuple(range(args.seeds))
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        log(f"grid: profile {profile_name}, schedules {args.schedules}, seeds {list(seeds)}")
        grid = grid_timing(str(profile_path(args.profile)), args.schedules, seeds, args.jobs,
                           Path(tmp), log)
    log("memory: data pipeline at full METR-LA size")
    memory = pipeline_memory()
    log("breakdown: one epoch")
    breakdown = epoch_breakdown(str(profile_path(args.profile)))
    log("levers: threads, bfloat16, torch.compile, fused")
    levers = lever_timings(str(profile_path(args.profile)), fuse=FUSE, device=args.device)
    log("limits: one step's FLOP/s against the measured matmul rate")
    limits = against_limit(str(profile_path(args.profile)), fuse=FUSE, device=args.device)
    result = {
        "profile": profile_name, "grid": grid, "memory": memory, "breakdown": breakdown,
        "levers": levers, "limits": limits,
        "command": "python -m bench perf " + " ".join(args.argv),
        "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    out = Path(args.out) / "perf"
    text = render(result)
    atomic_write_json(out / f"{profile_name}.json", result)
    atomic_write_text(out / f"{profile_name}.md", text)
    print(text)
    return 0

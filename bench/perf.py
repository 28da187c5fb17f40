"""``python -m bench perf``: the suite's grid against the naive reference, in one invocation.

Both ways train the same cells (schedules x budgets x seeds of a profile) with the same
arithmetic and the same parallelism: ``--jobs`` processes at a time with the profile's
threads per run, so the ratio measures what the suite does differently, not extra cores.
The naive way (``bench.naive``) is one process per cell, windows materialised up front and
fed through a ``DataLoader``, evaluation with autograd on, no reuse between budgets. The
suite's way is ``bench run``: windows cut by index from resident tensors, evaluation under
``inference_mode``, budget-independent schedules trained once to the longest budget.

The two are interleaved seed by seed, so slow drifts of a noisy machine hit both alike; the
result is reported as a ratio. Records of every cell are compared for identity. The memory
of the data pipeline and the time of each part of an epoch are measured separately.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from bench.config import ConfigError
from bench.experiment import load_resolved, profile_path, resolve_schedules
from bench.report import md_table
from bench.store import atomic_write_json, atomic_write_text

COMPARED = ("lr", "val_mae", "test_mae", "test_mae_h3", "test_mae_h12", "test_rmse")


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))


def _run_naive(profile: str, cells: list[tuple[str, int, int]], out: Path, jobs: int) -> float:
    """Wall time of one process per cell, ``jobs`` processes at a time."""
    t0 = time.perf_counter()
    waiting, running = list(cells), []
    while waiting or running:
        while waiting and len(running) < jobs:
            schedule, budget, seed = waiting.pop(0)
            cmd = [sys.executable, "-m", "bench.naive", "--profile", profile, "--schedule",
                   schedule, "--budget", str(budget), "--seed", str(seed), "--out",
                   str(out / f"{schedule}-{budget}-{seed}.csv")]
            running.append((cmd, subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.PIPE, text=True)))
        for cmd, proc in list(running):
            if proc.poll() is not None:
                running.remove((cmd, proc))
                if proc.returncode != 0:
                    raise RuntimeError(f"naive run failed: {' '.join(cmd[3:])}: "
                                       f"{proc.stderr.read()[-500:]}")
        time.sleep(0.01)
    return time.perf_counter() - t0


def _bench_run(args: list[str], what: str = "suite") -> float:
    """Seconds of one ``python -m bench run ARGS`` in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench", "run", *args],
                          env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} run failed: {proc.stderr[-500:]}")
    return time.perf_counter() - t0


def _run_suite(profile: str, schedules: str, seed: int, results: Path, jobs: int) -> float:
    return _bench_run(["--profile", profile, "--schedules", schedules, "--seeds",
                       f"{seed}-{seed}", "--results", str(results), "--experiment", "perf",
                       "--jobs", str(jobs)])


def compare_records(naive: pd.DataFrame, suite: pd.DataFrame) -> tuple[bool, float]:
    """Whether compared columns are identical, and the largest relative difference."""
    worst = 0.0
    for col in COMPARED:
        a, b = naive[col].to_numpy(), suite[col].to_numpy()
        if len(a) != len(b):
            return False, float("inf")
        denom = abs(b).clip(min=1e-12)
        worst = max(worst, float((abs(a - b) / denom).max()))
    return worst == 0.0, worst


def grid_timing(profile_name: str, schedules: str, seeds: tuple[int, ...], jobs: int,
                workdir: Path, log) -> dict:
    profile = replace(load_resolved(profile_name), schedules=schedules)
    items = resolve_schedules(profile)
    budgets = sorted(profile.budgets)
    naive_s, suite_s = 0.0, 0.0
    identical, cells, worst = 0, 0, 0.0
    (workdir / "naive").mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        seed_cells = [(item.name, b, seed) for item in items for b in budgets]
        seed_naive = _run_naive(profile_name, seed_cells, workdir / "naive", jobs)
        seed_suite = _run_suite(profile_name, schedules, seed, workdir / "suite", jobs)
        naive_s += seed_naive
        suite_s += seed_suite
        log(f"seed {seed}: naive {seed_naive:.1f} s, suite {seed_suite:.1f} s "
            f"(ratio {seed_suite / seed_naive:.3f})")
    epochs = pd.read_csv(workdir / "suite" / "perf" / "epochs.csv")
    for seed in seeds:
        for item in items:
            for b in budgets:
                naive = pd.read_csv(workdir / "naive" / f"{item.name}-{b}-{seed}.csv")
                suite = epochs[(epochs["schedule"] == item.name) & (epochs["budget"] == b)
                               & (epochs["seed"] == seed)].reset_index(drop=True)
                same, diff = compare_records(naive, suite)
                identical += same
                cells += 1
                worst = max(worst, diff)
    naive_epochs = len(seeds) * sum(b for _ in items for b in budgets)
    suite_epochs = len(seeds) * sum((sum(budgets) if i.budget_dependent else max(budgets))
                                    for i in items)
    return {"naive_seconds": naive_s, "suite_seconds": suite_s, "ratio": suite_s / naive_s,
            "cells": cells, "identical_cells": identical, "max_relative_difference": worst,
            "naive_epochs": naive_epochs, "suite_epochs": suite_epochs,
            "schedules": [i.name for i in items], "budgets": budgets, "seeds": list(seeds),
            "jobs": jobs}


MEMORY_PROBE = """
import resource, sys, numpy as np, torch
from stforecast.datasets import load_dataset
from stforecast.windows import WindowedData
from bench.naive import materialise
ds = load_dataset("synthetic-la", options={"nodes": 207, "days": 119, "seed": 0})
torch.set_num_threads(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
data = WindowedData(ds)
if sys.argv[1] == "materialised":
    arrays = {s: materialise(data, s) for s in ("train", "val", "test")}
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, ds.num_steps, ds.num_nodes)
"""


def pipeline_memory() -> dict:
    """Peak resident memory added by the data pipeline at full METR-LA size, both ways."""
    out = {}
    for way in ("indexed", "materialised"):
        proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, way], env=_env(),
                              capture_output=True, text=True, check=True)
        nbytes, steps, nodes = proc.stdout.split()
        out[way] = int(nbytes)
    out.update(steps=int(steps), nodes=int(nodes), ratio=out["indexed"] / out["materialised"])
    return out


def epoch_breakdown(profile_name: str, schedule: str = "constant") -> dict:
    """Seconds per epoch in data, forward, backward, optimizer, evaluation and I/O."""
    from bench.config import to_dict
    from bench.runner import load_data
    from bench.store import RunDir, atomic_torch_save
    from schedules import BUILTIN
    from stforecast.engine import TrainConfig, Trainer, resolve_device, seed_everything, sync
    from stforecast.metrics import masked_mae
    from stforecast.models import DataSpec, build_model

    profile = load_resolved(profile_name)
    device = resolve_device(profile.device)
    data = load_data(profile, device)
    spec = DataSpec(num_nodes=data.num_nodes, adjacency=data.dataset.adjacency,
                    steps_per_day=1440 // data.dataset.interval_minutes)
    seed_everything(0)
    model = build_model(profile.model.name, spec, profile.model.options).to(device)
    item = BUILTIN.get(schedule)
    opt = item.spec.make_optimizer(model.parameters())
    sched = item.spec.build(opt, 10, 1)
    tr = Trainer(model, opt, sched, data, step_unit="epoch", needs_metric=False, seed=0,
                 config=TrainConfig(**to_dict(profile.train)))
    tr.run_epoch()  # warm-up

    parts = dict.fromkeys(("data", "forward", "backward", "optimizer", "evaluation", "io"), 0.0)
    g = torch.Generator().manual_seed(1)
    starts = data.starts["train"][torch.randperm(data.num_windows("train"), generator=g)]
    bs = profile.train.batch_size
    model.train()
    for i in range(0, len(starts), bs):
        t0 = time.perf_counter()
        x, y = data.batch(starts[i:i + bs])
        sync(device)
        t1 = time.perf_counter()
        loss = masked_mae(data.scaler.inverse(model(x)), y, data.null_value)
        sync(device)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync(device)
        t3 = time.perf_counter()
        if profile.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), profile.train.grad_clip)
        opt.step()
        sync(device)
        t4 = time.perf_counter()
        parts["data"] += t1 - t0
        parts["forward"] += t2 - t1
        parts["backward"] += t3 - t2
        parts["optimizer"] += t4 - t3
    t0 = time.perf_counter()
    tr.evaluate("val")
    tr.evaluate("test")
    sync(device)
    parts["evaluation"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp))
        t0 = time.perf_counter()
        atomic_torch_save(run.checkpoint, tr.state_dict())
        run.write_records([r.row() for r in tr.records])
        run.write_status(status="running", epochs_done=1)
        parts["io"] = time.perf_counter() - t0
    total = sum(parts.values())
    return {"seconds": parts, "total": total, "model": profile.model.name,
            "device": str(device), "threads": torch.get_num_threads(),
            "steps": -(-len(starts) // bs)}


def lever_timings(profile_name: str, steps: int = 30, fuse: tuple[int, ...] = (4,),
                  device: str = "cpu") -> list[dict]:
    """Milliseconds per training step (per run) of the profile's model under each lever.

    Each variant trains ``steps`` steps after a warm-up on the profile's data, resident on
    ``device``; the median step time is reported beside the plain float32 baseline measured in
    the same call. On CUDA each step is timed to its last kernel (synchronised), and fused rows
    divide one stacked step of K runs by K.
    """
    import statistics

    from bench.runner import load_data
    from stforecast.engine import resolve_device, seed_everything, sync
    from stforecast.fused import FusedTrainer
    from stforecast.metrics import masked_mae
    from stforecast.models import DataSpec, build_model

    dev = resolve_device(device)
    profile = load_resolved(profile_name)
    data = load_data(profile, dev)
    spec = DataSpec(num_nodes=data.num_nodes, adjacency=data.dataset.adjacency,
                    steps_per_day=1440 // data.dataset.interval_minutes)
    bs = profile.train.batch_size
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(data.num_windows("train"), generator=g).to(dev)
    order = data.starts["train"][perm]
    batches = [data.batch(order[i:i + bs]) for i in range(0, bs * 8, bs)]
    threads_before = torch.get_num_threads()

    def model():
        seed_everything(0)
        return build_model(profile.model.name, spec, profile.model.options).to(dev)

    def timed(step, n=steps) -> float:
        for i in range(3):
            step(i)
        sync(dev)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            step(i)
            sync(dev)
            times.append(time.perf_counter() - t0)
        return 1000 * statistics.median(times)

    def plain(autocast=None, compiled=False):
        m = model()
        if compiled:
            m.compile()
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)

        def step(i):
            x, y = batches[i % len(batches)]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast is not None):
                pred = m(x).float()
            loss = masked_mae(data.scaler.inverse(pred), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    def fused_step(k):
        from schedules import BUILTIN
        from stforecast.engine import TrainConfig, Trainer

        item = BUILTIN.get("constant")
        members = []
        for seed in range(k):
            m = model()
            opt = item.spec.make_optimizer(m.parameters())
            members.append(Trainer(m, opt, item.spec.build(opt, 2, 1), data, step_unit="epoch",
                                   needs_metric=False, seed=seed,
                                   config=TrainConfig(batch_size=bs)))
        fused = FusedTrainer(members)

        def step(i):
            x, y = batches[i % len(batches)]
            fused.train_step(torch.stack([x] * k), torch.stack([y] * k))
        return step

    rows = []
    threads = profile.threads_per_run() if dev.type == "cpu" else torch.get_num_threads()
    torch.set_num_threads(threads)
    base = timed(plain())
    rows.append(["float32, eager", threads, base])
    all_threads = os.cpu_count() or 1
    if dev.type == "cpu" and all_threads != threads:
        torch.set_num_threads(all_threads)
        rows.append(["float32, eager", all_threads, timed(plain())])
        torch.set_num_threads(threads)
    rows.append(["bfloat16 autocast (changes results)", threads, timed(plain("bf16"))])
    t0 = time.perf_counter()
    compiled = plain(compiled=True)
    compiled(0)
    sync(dev)
    compile_s = time.perf_counter() - t0
    rows.append([f"torch.compile ({compile_s:.0f} s to compile)", threads, timed(compiled)])
    for k in fuse:
        try:
            rows.append([f"fused, {k} runs stacked with vmap (per run)", threads,
                         timed(fused_step(k)) / k])
        except ValueError as exc:
            rows.append([f"fused: not available ({exc})", threads, float("nan")])
            break
    torch.set_num_threads(threads_before)
    return [{"lever": r[0], "threads": r[1], "ms_per_step": r[2], "ratio": r[2] / base,
             "device": str(dev)} for r in rows]


def ray_overhead(profile_name: str, schedules: str = "all", seeds: str = "0-0") -> dict:
    """Wall time of the same small grid through the local executor and a local Ray instance
    (started by the command, as ``--executor ray`` without ``--address`` does)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for executor in ("local", "ray"):
            out[f"{executor}_seconds"] = _bench_run(
                ["--profile", profile_name, "--schedules", schedules, "--seeds", seeds,
                 "--results", str(Path(tmp) / executor), "--executor", executor], executor)
            out["runs"] = len(list((Path(tmp) / executor).glob("*/runs/*/*")))
    out["overhead_per_run"] = (out["ray_seconds"] - out["local_seconds"]) / out["runs"]
    return out


def model_speed(dataset: str, options: dict, data_dir: str | None, epochs: int = 2,
                device: str = "cpu") -> list[dict]:
    """Parameters and seconds per training epoch / evaluation pass of every registered model."""
    from schedules import BUILTIN
    from stforecast.datasets import load_dataset
    from stforecast.engine import Trainer, resolve_device, seed_everything
    from stforecast.models import DataSpec, build_model, count_parameters, model_names
    from stforecast.windows import WindowedData

    dev = resolve_device(device)
    ds = load_dataset(dataset, data_dir, options)
    data = WindowedData(ds, device=dev)
    spec = DataSpec(num_nodes=ds.num_nodes, adjacency=ds.adjacency,
                    steps_per_day=1440 // ds.interval_minutes)
    rows = []
    for name in model_names():
        seed_everything(0)
        model = build_model(name, spec).to(dev)
        item = BUILTIN.get("constant")
        opt = item.spec.make_optimizer(model.parameters())
        tr = Trainer(model, opt, item.spec.build(opt, epochs + 1, 1), data, step_unit="epoch",
                     needs_metric=False, seed=0)
        tr.run_epoch()  # warm-up (allocations, first-call overheads)
        recs = [tr.run_epoch() for _ in range(epochs)]
        rows.append({"model": name, "parameters": count_parameters(model),
                     "train_seconds": sum(r.train_seconds for r in recs) / epochs,
                     "eval_seconds": sum(r.eval_seconds for r in recs) / epochs,
                     "windows": data.num_windows("train"), "nodes": ds.num_nodes,
                     "threads": torch.get_num_threads(), "device": str(dev),
                     "test_mae_after_warmup": recs[-1].test["mae"]})
    return rows


def render(result: dict) -> str:
    g, m, b = result["grid"], result["memory"], result["breakdown"]
    rows = [
        [f"naive reference (process per cell, materialised windows, DataLoader, autograd "
         f"eval, no budget reuse; {g['jobs']} at a time)", f"{g['naive_seconds']:.1f}",
         str(g["naive_epochs"]), "1.000"],
        [f"suite (`bench run`, --jobs {g['jobs']})", f"{g['suite_seconds']:.1f}",
         str(g["suite_epochs"]), f"{g['ratio']:.3f}"],
    ]
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
        "## Ratios",
        "",
        f"- whole-grid wall time, suite / naive: **{g['ratio']:.3f}**",
        f"- data-pipeline peak memory, indexed / materialised: **{m['ratio']:.3f}**",
        "",
    ])


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
        table = md_table(["lever", "threads", "ms / step", "ratio"],
                         [[r["lever"], str(r["threads"]), f"{r['ms_per_step']:.2f}",
                           f"{r['ratio']:.2f}"] for r in rows])
        name = f"levers-{profile_path(args.profile).stem}-{rows[0]['device'].split(':')[0]}"
        text = _measured_by(args, f"{_device_name(rows[0]['device'])}, "
                                  f"torch {torch.__version__}") + f"{table}\n"
        print(text)
        atomic_write_text(Path(args.out) / "perf" / f"{name}.md", text)
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
    levers = lever_timings(str(profile_path(args.profile)), device=args.device)
    result = {
        "profile": profile_name, "grid": grid, "memory": memory, "breakdown": breakdown,
        "levers": levers,
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

"""Whole-grid wall time, the suite against the naive reference, and the data pipeline's
memory, each measured in fresh processes side by side.

Both ways train the same cells (schedules x budgets x seeds of a profile) with the same
arithmetic and the same parallelism: ``--jobs`` processes at a time with the profile's
threads per run, so the ratio measures what the suite does differently, not extra cores.
The two are interleaved seed by seed, so slow drifts of a noisy machine hit both alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench.profile import load_resolved
from bench.selection import resolve_schedules
from bench.trunks import epochs_trained

COMPARED = ("lr", "val_mae", "test_mae", "test_mae_h3", "test_mae_h12", "test_rmse")


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))  # the repository


def _run_naive(profile: str, cells: list[tuple[str, int, int]], out: Path, jobs: int) -> float:
    """Wall time of one process per cell, ``jobs`` processes at a time."""
    t0 = time.perf_counter()
    waiting, running = list(cells), []
    while waiting or running:
        while waiting and len(running) < jobs:
            schedule, budget, seed = waiting.pop(0)
            cmd = [sys.executable, "-m", "bench.perf.naive", "--profile", profile, "--schedule",
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
    folded_epochs = len(seeds) * sum((sum(budgets) if i.budget_dependent else max(budgets))
                                     for i in items)
    suite_epochs, _ = epochs_trained(workdir / "suite" / "perf")
    return {"naive_seconds": naive_s, "suite_seconds": suite_s, "ratio": suite_s / naive_s,
            "cells": cells, "identical_cells": identical, "max_relative_difference": worst,
            "naive_epochs": naive_epochs, "suite_epochs": suite_epochs,
            "folded_epochs": folded_epochs,
            "trunk_epochs_saved": folded_epochs - suite_epochs,
            "schedules": [i.name for i in items], "budgets": budgets, "seeds": list(seeds),
            "jobs": jobs}


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


MEMORY_PROBE = """
import resource, sys, numpy as np, torch
from stforecast.datasets import load_dataset
from stforecast.windows import WindowedData
from bench.perf.naive import materialise
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

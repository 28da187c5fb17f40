"""Where a training step's time goes, and what each lever does to it.

Every run measured here is built by ``bench.build.build_run`` and stepped with the
trainer's own ``train_step`` (or its parts), so the timings are of the code the grid runs.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench.build import build_run
from bench.data import load_data
from bench.profile import (
    DatasetSettings,
    ModelSettings,
    Profile,
    load_resolved,
    validate_components,
)
from bench.store import RunDir, atomic_torch_save
from schedules import BUILTIN
from stforecast.engine import resolve_device, sync
from stforecast.fused import FusedTrainer
from stforecast.models import count_parameters, model_names

CONTROL = "constant"  # the schedule timed: its lr never changes, so neither does its cost


def step_setup(profile_name: str, device: str = "cpu", batches: int = 8):
    """``(profile, device, data, batches)``: the profile's data resident on ``device`` and a
    few fixed training batches, so every variant timed steps through the same inputs."""
    dev = resolve_device(device)
    profile = replace(load_resolved(profile_name), device=str(dev))
    data = load_data(profile, dev)
    bs = profile.train.batch_size
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(data.num_windows("train"), generator=g).to(dev)
    order = data.starts["train"][perm]
    fixed = [data.batch(order[i:i + bs]) for i in range(0, bs * batches, bs)]
    return profile, dev, data, fixed


def single_step(profile: Profile, data, batches, **train_changes):
    """``step(i)``: one ``Trainer.train_step`` of a fresh run of the profile's model (with
    ``train_changes`` applied to its training settings) on batch ``i`` of ``batches``."""
    prof = replace(profile, train=replace(profile.train, **train_changes))
    tr = build_run(prof, BUILTIN.get(CONTROL), 0, 2, data)
    tr.train_mode()

    def step(i):
        tr.train_step(*batches[i % len(batches)])
    step.trainer = tr
    return step


def _default_compiled(step):
    """``step`` (a ``single_step``) with its model compiled by ``torch.compile``'s defaults
    instead of the suite's CPU backend (``stforecast.compilation``)."""
    step.trainer.model.compile()
    return step


def fused_steps(profile: Profile, data, batches, k: int):
    """``step(i)``: one ``FusedTrainer.train_step`` of ``k`` runs stacked with vmap, every
    member on batch ``i``; raises ``ValueError`` where the model cannot be fused."""
    control = BUILTIN.get(CONTROL)
    fused = FusedTrainer([build_run(profile, control, seed, 2, data) for seed in range(k)])

    def step(i):
        x, y = batches[i % len(batches)]
        fused.train_step(torch.stack([x] * k), torch.stack([y] * k))
    return step


def epoch_breakdown(profile_name: str) -> dict:
    """Seconds per epoch in data, forward, backward, optimizer, evaluation and I/O."""
    profile = load_resolved(profile_name)
    device = resolve_device(profile.device)
    data = load_data(profile, device)
    tr = build_run(profile, BUILTIN.get(CONTROL), 0, 10, data)
    tr.run_epoch()  # warm-up

    parts = dict.fromkeys(("data", "forward", "backward", "optimizer", "evaluation", "io"), 0.0)
    g = torch.Generator().manual_seed(1)
    starts = data.starts["train"][torch.randperm(data.num_windows("train"), generator=g)]
    bs = profile.train.batch_size
    tr.train_mode()
    for i in range(0, len(starts), bs):
        t0 = time.perf_counter()
        x, y = data.batch(starts[i:i + bs])
        sync(device)
        t1 = time.perf_counter()
        loss = tr.forward_loss(x, y)
        sync(device)
        t2 = time.perf_counter()
        tr.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sync(device)
        t3 = time.perf_counter()
        tr.apply_gradients()
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
    profile, dev, data, batches = step_setup(profile_name, device)
    threads_before = torch.get_num_threads()

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

    def single(**train_changes):
        return single_step(profile, data, batches, **train_changes)

    rows = []
    threads = profile.threads_per_run() if dev.type == "cpu" else torch.get_num_threads()
    torch.set_num_threads(threads)
    base = timed(single())
    rows.append(["float32, eager", threads, base])
    all_threads = os.cpu_count() or 1
    if dev.type == "cpu" and all_threads != threads:
        torch.set_num_threads(all_threads)
        rows.append(["float32, eager", all_threads, timed(single())])
        torch.set_num_threads(threads)
    rows.append(["bfloat16 autocast (changes results)", threads, timed(single(autocast="bf16"))])
    if dev.type == "cuda":
        rows.append(["TF32 matmuls and convolutions (changes results)", threads,
                     timed(single(tf32=True))])
    variants = [("torch.compile", lambda: single(compile=True))]
    if dev.type == "cpu":  # what stforecast.compilation changes, against torch's defaults
        variants.append(("torch.compile with torch's defaults (bool masks saved)",
                         lambda: _default_compiled(single())))
    for name, make in variants:
        torch._dynamo.reset()  # each variant compiles afresh, not from the one before
        t0 = time.perf_counter()
        compiled = make()
        compiled(0)
        sync(dev)
        compile_s = time.perf_counter() - t0
        rows.append([f"{name} ({compile_s:.0f} s to compile)", threads, timed(compiled)])
    for k in fuse:
        try:
            rows.append([f"fused, {k} runs stacked with vmap (per run)", threads,
                         timed(fused_steps(profile, data, batches, k)) / k])
        except ValueError as exc:
            rows.append([f"fused: not available ({exc})", threads, float("nan")])
            break
    torch.set_num_threads(threads_before)
    return [{"lever": r[0], "threads": r[1], "ms_per_step": r[2], "ratio": r[2] / base,
             "device": str(dev)} for r in rows]


def precision_effect(profile_name: str, device: str = "cpu",
                     epochs: int | None = None) -> list[dict]:
    """What each arithmetic lever does to results, not only to speed.

    One run of the profile's model (the constant schedule, the profile's first seed, its
    shortest budget unless ``epochs`` is given) is trained in float32 twice and once under
    each lever (bf16 autocast, torch.compile; denormals flushed on the CPU, TF32 on CUDA);
    each row gives the final test MAE and its relative difference from the first float32
    run. The second float32 run is the noise floor: zero on the CPU, where a run is
    bit-reproducible, and the size of kernel nondeterminism on a GPU, so a lever's difference
    is read against it. On the CPU the runs use the profile's threads per run, as the grid
    does: at one thread a run is bit-reproducible, at two two runs of one seed already differ
    (MKL's and OpenMP's parallel reductions), which would hide a lever's effect in a noise the
    grid never has.
    """
    dev = resolve_device(device)
    profile = replace(load_resolved(profile_name), device=str(dev))
    data = load_data(profile, dev)
    threads_before = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(profile.threads_per_run())
    epochs = epochs or min(profile.budgets)
    seed = profile.seeds[0]
    variants = [("float32", {}), ("float32 again (noise floor)", {}),
                ("bfloat16 autocast", {"autocast": "bf16"}), ("torch.compile", {"compile": True})]
    if dev.type == "cpu":
        variants.append(("denormals flushed to zero", {"flush_denormal": True}))
    if dev.type == "cuda":
        variants.append(("TF32 matmuls and convolutions", {"tf32": True}))
    rows = []
    try:
        for name, changes in variants:
            prof = replace(profile, train=replace(profile.train, **changes))
            tr = build_run(prof, BUILTIN.get(CONTROL), seed, epochs, data)
            t0 = time.perf_counter()
            record = tr.fit(epochs)[-1]
            sync(dev)
            rows.append({"arithmetic": name, "epochs": epochs, "seed": seed,
                         "threads": torch.get_num_threads(), "test_mae": record.test["mae"],
                         "seconds": time.perf_counter() - t0})
    finally:
        torch.set_num_threads(threads_before)
    base = rows[0]["test_mae"]
    for row in rows:
        row["relative_difference"] = (row["test_mae"] - base) / base
    return rows


def model_speed(dataset: str, options: dict, data_dir: str | None, epochs: int = 2,
                device: str = "cpu") -> list[dict]:
    """Parameters and seconds per training epoch / evaluation pass of every built-in model."""
    dev = resolve_device(device)
    rows = []
    for name in model_names():
        profile = validate_components(Profile(
            dataset=DatasetSettings(name=dataset, options=options, data_dir=data_dir),
            model=ModelSettings(name=name), device=str(dev)), "--models")
        data = load_data(profile, dev)
        tr = build_run(profile, BUILTIN.get(CONTROL), 0, epochs + 1, data)
        tr.run_epoch()  # warm-up (allocations, first-call overheads)
        recs = [tr.run_epoch() for _ in range(epochs)]
        rows.append({"model": name, "parameters": count_parameters(tr.model),
                     "train_seconds": sum(r.train_seconds for r in recs) / epochs,
                     "eval_seconds": sum(r.eval_seconds for r in recs) / epochs,
                     "windows": data.num_windows("train"), "nodes": data.num_nodes,
                     "threads": torch.get_num_threads(), "device": str(dev),
                     "test_mae_after_warmup": recs[-1].test["mae"]})
    return rows

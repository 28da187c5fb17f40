"""The naive reference that ``bench perf`` measures the suite against; used by nothing else.

This is how a typical research script (the tuning note's ``main.py``) runs one cell of the
grid: one process per (schedule, budget, seed), every window materialised up front as numpy
arrays and fed through a ``DataLoader``, evaluation with autograd on (no ``inference_mode``)
in training-sized batches, torch's default per-parameter optimizer on the CPU, and no reuse
of a shorter budget from a longer run. Its arithmetic is kept the same as the suite's (same
weights, batch order, loss and metrics) so that the records it writes can be compared with
the suite's for identity.

Run: ``python -m bench.perf.naive --profile quick --schedule plateau --budget 30 --seed 0 --out F``
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from bench.build import build_run
from bench.data import load_data
from bench.profile import load_resolved
from bench.store import atomic_write_text, rows_to_csv
from schedules import BUILTIN
from stforecast.metrics import HorizonMetrics, masked_mae
from stforecast.windows import WindowedData


class EpochPermutation(Sampler):
    """One ``randperm`` per epoch from the run's generator, the order the suite draws.

    (``RandomSampler`` draws a second, unused permutation per epoch, which would give the two
    ways different batch orders from the second epoch on.)
    """

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


def materialise(data: WindowedData, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Every window of a split as arrays ``[S, L_in, N, C]`` and ``[S, L_out, N, 1]``."""
    xs, ys = [], []
    for s in data.starts[split].tolist():
        x, y = data.batch(torch.tensor([s]))
        xs.append(x[0].numpy())
        ys.append(y[0].numpy())
    return np.stack(xs), np.stack(ys)


def evaluate(model, loader, data, output_len) -> dict[str, float]:
    model.eval()
    acc = HorizonMetrics(output_len, data.null_value, torch.device("cpu"))
    for x, y in loader:  # autograd stays on, as in a script without no_grad
        acc.update(data.scaler.inverse(model(x)).detach(), y)
    return acc.compute()


def run(profile_name: str, schedule: str, budget: int, seed: int, out: str) -> None:
    profile = load_resolved(profile_name)
    torch.set_num_threads(profile.threads_per_run())  # as the suite's runs: same arithmetic
    data = load_data(profile, torch.device("cpu"))  # the scaler and the window definitions
    arrays = {s: materialise(data, s) for s in ("train", "val", "test")}
    bs = profile.train.batch_size
    sets = {s: TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
            for s, (x, y) in arrays.items()}
    order = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(sets["train"], batch_size=bs,
                              sampler=EpochPermutation(len(sets["train"]), order),
                              generator=torch.Generator())
    eval_bs = profile.train.eval_batch_size
    val_loader = DataLoader(sets["val"], batch_size=eval_bs)
    test_loader = DataLoader(sets["test"], batch_size=eval_bs)

    # Built as the suite builds every run; only the loop below is the naive one.
    item = BUILTIN.get(schedule)
    built = build_run(profile, item, seed, budget, data)
    model, optimizer, scheduler = built.model, built.optimizer, built.scheduler
    for group in optimizer.param_groups:  # torch's default implementation, as a script gets
        if group.get("foreach"):
            group["foreach"] = None
    split = data.split
    clip = profile.train.grad_clip
    rows = []
    for epoch in range(budget):
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        if hasattr(optimizer, "train"):
            optimizer.train()
        losses = []
        lr_end = lr
        for x, y in train_loader:
            loss = masked_mae(data.scaler.inverse(model(x)), y, data.null_value)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            lr_end = optimizer.param_groups[0]["lr"]
            optimizer.step()
            if item.spec.step_unit == "step":
                scheduler.step()
            losses.append(loss.item())
        if hasattr(optimizer, "eval"):
            optimizer.eval()
        val = evaluate(model, val_loader, data, split.output_len)
        test = evaluate(model, test_loader, data, split.output_len)
        if item.spec.step_unit == "epoch":
            scheduler.step(val["mae"]) if item.spec.needs_metric else scheduler.step()
        row = {"epoch": epoch, "lr": lr, "lr_end": lr_end,
               "train_loss": float(np.sum(losses)) / len(losses)}
        row.update({f"val_{k}": v for k, v in val.items()})
        row.update({f"test_{k}": v for k, v in test.items()})
        rows.append(row)
    atomic_write_text(out, rows_to_csv(rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf.naive",
                                description=__doc__.split("\n")[0])
    p.add_argument("--profile", required=True)
    p.add_argument("--schedule", required=True)
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    run(a.profile, a.schedule, a.budget, a.seed, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

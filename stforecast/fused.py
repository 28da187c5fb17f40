"""Several runs of one architecture trained at once, stacked with ``torch.func.vmap``.

Small models leave a GPU mostly idle: one step of STID on METR-LA is a few small matrix
products. Stacking K runs (different schedules or seeds of the same model and data) into
one batched forward and backward fills the device while every run keeps its own parameters,
its own optimizer and its own genuine torch scheduler. This is an option, not the default:
on a CPU the batched kernels were measured no faster than running the members one by one.

Each member is an ordinary ``Trainer``; the fused loop replaces only how a step's forward and
backward are computed. Per member, the batch order, the loss, ``Trainer.apply_gradients``
(clipping, optimizer step, per-step schedule) and ``Trainer.close_epoch`` (divergence,
epoch-level schedule step, record) are exactly those of ``Trainer.run_epoch``, so a member's
records match its standalone run up to the rounding of batched versus single matrix
products (tested on CPU). Dropout masks are drawn per member by vmap and therefore differ
from a standalone run's; models with batch-norm statistics (Graph WaveNet) are refused.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn
from torch.func import functional_call, vmap

from stforecast.engine import Diverged, EpochRecord, Trainer, current_lr, sync
from stforecast.metrics import HorizonMetrics, masked_mae_stacked


def has_batch_norm(model: nn.Module) -> bool:
    """Whether a model keeps batch-norm statistics, which vmap cannot update per member."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class FusedTrainer:
    """Trains ``members`` in lock step; each keeps its own state and records."""

    def __init__(self, members: list[Trainer]) -> None:
        if not members:
            raise ValueError("no members to fuse")
        first = members[0]
        for t in members:
            if t.data is not first.data or type(t.model) is not type(first.model):
                raise ValueError("fused members must share the dataset and the architecture")
            if t.config != first.config:
                raise ValueError("fused members must share the training settings")
            if has_batch_norm(t.model):
                raise ValueError(f"{type(t.model).__name__} keeps batch-norm statistics, which "
                                 "vmap cannot update per member; train it unfused")
            if t.epoch != first.epoch:
                raise ValueError("fused members must be at the same epoch")
        self.members = list(members)
        self.data, self.config, self.device = first.data, first.config, first.device
        self.template = copy.deepcopy(first.model)  # structure only; weights come per member
        self.names = [n for n, _ in first.model.named_parameters()]
        self.buffer_names = [n for n, _ in first.model.named_buffers()]

    def _stacked(self, members: list[Trainer]):
        params = {n: torch.stack([dict(t.model.named_parameters())[n] for t in members])
                  for n in self.names}  # [K, ...]; gradients flow back to each member
        buffers = {n: torch.stack([dict(t.model.named_buffers())[n] for t in members])
                   for n in self.buffer_names}
        return params, buffers

    def _forward(self, params, buffers, x, x_dim):
        def one(p, b, xi):
            return functional_call(self.template, (p, b), (xi,))

        return vmap(one, in_dims=(0, 0, x_dim), randomness="different")(params, buffers, x)

    def run_epoch(self) -> list[tuple[Trainer, EpochRecord | Diverged]]:
        """One epoch for every member: ``(member, record)``, or ``(member, Diverged)`` for a
        member whose loss blew up; diverged members leave the group, the others go on."""
        members = self.members
        sync(self.device)
        t0 = time.perf_counter()
        lrs = [current_lr(t.optimizer) for t in members]
        lr_ends = list(lrs)
        self.template.train()
        for t in members:
            t.train_mode()
        loss_sums = torch.zeros(len(members), device=self.device)
        steps = 0
        streams = [t.data.batches("train", self.config.batch_size, t.generator) for t in members]
        for batches in zip(*streams):
            lr_ends = [current_lr(t.optimizer) for t in members]  # the rate this step uses
            loss_sums += self.train_step(torch.stack([b[0] for b in batches]),
                                         torch.stack([b[1] for b in batches]))
            steps += 1
        train_losses = (loss_sums / max(steps, 1)).tolist()
        sync(self.device)
        t1 = time.perf_counter()

        vals, tests = self.evaluate("val"), self.evaluate("test")
        sync(self.device)
        t2 = time.perf_counter()
        share = 1 / len(members)  # members share the time; sums over runs stay honest
        seconds = ((t2 - t0) * share, (t1 - t0) * share, (t2 - t1) * share)
        results: list[tuple[Trainer, EpochRecord | Diverged]] = []
        for k, t in enumerate(members):
            try:
                results.append((t, t.close_epoch(lrs[k], lr_ends[k], train_losses[k], vals[k],
                                                 tests[k], seconds)))
            except Diverged as exc:
                results.append((t, exc))
        self.members = [t for t, r in results if isinstance(r, EpochRecord)]
        return results

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step of every member on its own batch, ``x`` ``[K, B, L_in, N, C]``
        and ``y`` ``[K, B, L_out, N, 1]``; returns the K training losses (detached)."""
        members = self.members
        params, buffers = self._stacked(members)
        with members[0].autocast():
            out = self._forward(params, buffers, x, 0)  # [K, B, L_out, N, 1]
        losses = masked_mae_stacked(self.data.scaler.inverse(out.float()), y,
                                    self.data.null_value)
        for t in members:
            t.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # members are independent: each gets its own gradient
        for t in members:
            t.apply_gradients()
        return losses.detach()

    def evaluate(self, split: str) -> list[dict[str, float]]:
        members = self.members
        for t in members:
            t.eval_mode()
        self.template.eval()
        accs = [HorizonMetrics(self.data.split.output_len, self.data.null_value, self.device)
                for _ in members]
        with torch.inference_mode():
            params, buffers = self._stacked(members)
            for x, y in self.data.batches(split, self.config.eval_batch_size):
                with members[0].autocast():
                    out = self._forward(params, buffers, x, None)
                pred = self.data.scaler.inverse(out.float())
                for k, acc in enumerate(accs):
                    acc.update(pred[k], y)
        return [acc.compute() for acc in accs]

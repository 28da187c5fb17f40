"""Several runs of one architecture trained at once, stacked with ``torch.func.vmap``.

Small models leave a GPU mostly idle: one step of STID on METR-LA is a few small matrix
products. Stacking K runs (different schedules or seeds of the same model and data) into
one batched forward and backward fills the device while every run keeps its own parameters,
its own optimizer and its own genuine torch scheduler. This is an option, not the default:
on a CPU the batched kernels were measured no faster than running the members one by one.

Each member is an ordinary ``Trainer``; the fused loop replaces how a step's forward,
backward and update are computed. Per member, the batch order, the loss, the clipping, the
optimizer's update rule, the per-step schedule and ``Trainer.close_epoch`` (divergence,
epoch-level schedule step, record) are exactly those of ``Trainer.run_epoch``, so a member's
records match its standalone run up to the rounding of batched versus single operations
(tested on CPU). Dropout masks are drawn per member by vmap and therefore differ from a
standalone run's.

During an epoch the members' state lives here, stacked with a leading member dimension
(``[K, ...]``): parameters as one ``[K, D]`` tensor (``stforecast.stacked.StackLayout``),
buffers such as batch-norm running statistics as ``[K, *shape]`` tensors, and Adam / AdamW /
SGD state inside ``StackedOptimizer``, which updates all members in a few batched operations
(on a GPU, K optimizer steps of tens of small kernels each cost more than the batched
backward). Schedule-free AdamW, or any optimizer it does not cover, steps per member
through ``Trainer.apply_gradients`` on its own gradient, as every member does with
``stacked_optimizer=False``. Each epoch begins by reading the members' state (``_load``) and
ends by writing it back (``_store``) before ``close_epoch``, so whatever saves a member after
an epoch (``bench.job`` checkpoints each member) sees exactly what its own run would hold.

Batch norm: vmap runs the template's BatchNorm on each member's slice of the stacked
running statistics, in place: train mode normalises with the batch's statistics and updates
that member's running mean, variance and ``num_batches_tracked``; eval mode uses them.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn
from torch.func import functional_call, vmap

from stforecast.engine import Diverged, EpochRecord, Trainer, current_lr, sync
from stforecast.metrics import HorizonMetrics, masked_mae_stacked
from stforecast.stacked import StackedOptimizer, StackLayout, stacked_kind


def has_batch_norm(model: nn.Module) -> bool:
    """Whether a model keeps batch-norm statistics. ``FusedTrainer`` keeps them per member
    since it stacks buffers; kept for callers that still ask."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _params(t: Trainer) -> list[nn.Parameter]:
    return [p for _, p in t.model.named_parameters()]


class FusedTrainer:
    """Trains ``members`` in lock step; each keeps its own state and records.

    ``stacked_optimizer=False`` steps every member with its own torch optimizer (the
    per-member path, kept for comparison); by default Adam, AdamW and SGD members are
    stepped together by ``StackedOptimizer`` and only the others one by one.
    """

    def __init__(self, members: list[Trainer], *, stacked_optimizer: bool = True) -> None:
        if not members:
            raise ValueError("no members to fuse")
        first = members[0]
        self.layout = StackLayout.of(first.model)
        buffers = [(n, b.shape) for n, b in first.model.named_buffers()]
        for t in members:
            if t.data is not first.data or type(t.model) is not type(first.model) \
                    or not self.layout.matches(t.model) \
                    or [(n, b.shape) for n, b in t.model.named_buffers()] != buffers:
                raise ValueError("fused members must share the dataset and the architecture")
            if t.config != first.config:
                raise ValueError("fused members must share the training settings")
            if t.epoch != first.epoch:
                raise ValueError("fused members must be at the same epoch")
        kinds = {(p.dtype, p.device) for t in members for p in _params(t)}
        if len(kinds) > 1:
            raise ValueError(f"fused members need parameters of one dtype on one device, got "
                             f"{sorted(str(k) for k in kinds)}")
        self.members = list(members)
        self.data, self.config, self.device = first.data, first.config, first.device
        self.template = copy.deepcopy(first.model)  # structure only; weights come per member
        self.buffer_names = [n for n, _ in buffers]
        self.requires_grad = [p.requires_grad for p in _params(first)]
        self.stacked_optimizer = stacked_optimizer
        self._live = False  # True while the stacked state below is the members' current one
        self.params: torch.Tensor | None = None         # [K, D]
        self.buffers: dict[str, torch.Tensor] = {}      # name -> [K, *shape]
        self.optimizer: StackedOptimizer | None = None
        self.fallback: list[int] = []                    # rows stepped by their own optimizer

    def stepped_alone(self) -> list[Trainer]:
        """The members whose optimizer steps one by one (schedule-free AdamW, or all of them
        with ``stacked_optimizer=False``)."""
        if not self.stacked_optimizer:
            return list(self.members)
        return [t for t in self.members if stacked_kind(t.optimizer, _params(t)) is None]

    # -- the stacked state ----------------------------------------------------------------
    @torch.no_grad()
    def _load(self) -> None:
        """Stack the members' current parameters, buffers and optimizer state."""
        members = self.members
        self.params = self.layout.stack([_params(t) for t in members])
        self.buffers = {n: torch.stack([dict(t.model.named_buffers())[n] for t in members])
                        for n in self.buffer_names}
        if self.stacked_optimizer:
            self.optimizer = StackedOptimizer([t.optimizer for t in members],
                                              [_params(t) for t in members], self.layout,
                                              self.params, self.config.grad_clip)
            self.fallback = self.optimizer.fallback
        else:
            self.optimizer, self.fallback = None, list(range(len(members)))
        self._live = True

    @torch.no_grad()
    def _store(self) -> None:
        """Write the stacked state back into the members: parameters of the members stepped
        here (the others' are current already), every buffer, the optimizer state. Copies,
        never views of the stack: a member's checkpoint holds only its own tensors."""
        if not self._live:
            return
        alone = set(self.fallback)
        for k, t in enumerate(self.members):
            if k not in alone:
                for p, v in zip(_params(t), self.layout.row(self.params, k)):
                    p.copy_(v)
            own = dict(t.model.named_buffers())
            for n in self.buffer_names:
                own[n].copy_(self.buffers[n][k])
        if self.optimizer is not None:
            self.optimizer.write_back()
        self._live = False

    @torch.no_grad()
    def _pull(self, rows: list[int]) -> None:
        """Refresh the rows of members whose own optimizer holds their current weights."""
        for k in rows:
            self.params[k] = self.layout.flatten(_params(self.members[k]))

    def sync_members(self) -> None:
        """Bring every member up to date with the stacked state (``run_epoch`` does this
        before closing the epoch; needed only after calling ``train_step`` directly)."""
        self._store()

    # -- the loop -------------------------------------------------------------------------
    def _forward(self, params: list[torch.Tensor], x, x_dim):
        names = self.layout.names

        def one(p, b, xi):
            return functional_call(self.template, (dict(zip(names, p)), b), (xi,))

        return vmap(one, in_dims=(0, 0, x_dim), randomness="different")(params, self.buffers,
                                                                         x)

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
        self._load()  # after train_mode: schedule-free members are back on their train weights
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
        self._store()  # members hold their state before the epoch closes (and is saved)
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
        if not self._live:
            self._load()
        members = self.members
        # Fresh leaves each step: [K, *shape] views of the stack, so gradients land per
        # parameter as [K, *shape] and the update below writes the stack in place.
        leaves = [v.requires_grad_() if rg else v
                  for v, rg in zip(self.layout.views(self.params), self.requires_grad)]
        with members[0].autocast():
            out = self._forward(leaves, x, 0)  # [K, B, L_out, N, 1]
        losses = masked_mae_stacked(self.data.scaler.inverse(out.float()), y,
                                    self.data.null_value)
        losses.sum().backward()  # members are independent: each gets its own gradient
        grads = [v.grad for v in leaves]
        active = [g is not None for g in grads]  # torch skips a parameter without gradient
        flat_grads = self.layout.flatten_stacked(grads, self.params)  # [K, D]
        del leaves, grads
        if self.optimizer is not None:
            self.optimizer.step(self.params, flat_grads, active)
        alone = set(self.fallback)
        for k in self.fallback:
            self._step_alone(k, flat_grads, active)
        for k, t in enumerate(members):
            if k not in alone:
                t.advance_schedule("step")  # the member's own scheduler, its own optimizer
        return losses.detach()

    def _step_alone(self, k: int, flat_grads: torch.Tensor, active: list[bool]) -> None:
        """Member ``k`` steps with its own optimizer, as in a standalone run: its gradient
        (a view of row ``k``), ``Trainer.apply_gradients``, then its weights into the stack."""
        t = self.members[k]
        params = _params(t)
        for p, g, on in zip(params, self.layout.row(flat_grads, k), active):
            p.grad = g if on else None
        t.apply_gradients()
        for p in params:
            p.grad = None
        with torch.no_grad():
            self.params[k] = self.layout.flatten(params)

    def evaluate(self, split: str) -> list[dict[str, float]]:
        members = self.members
        for t in members:
            t.eval_mode()
        self.template.eval()
        if not self._live:
            self._load()
        self._pull(self.fallback)  # schedule-free members evaluate their averaged weights
        accs = [HorizonMetrics(self.data.split.output_len, self.data.null_value, self.device)
                for _ in members]
        with torch.inference_mode():
            params = self.layout.views(self.params)
            for x, y in self.data.batches(split, self.config.eval_batch_size):
                with members[0].autocast():
                    out = self._forward(params, x, None)
                pred = self.data.scaler.inverse(out.float())
                for k, acc in enumerate(accs):
                    acc.update(pred[k], y)
        return [acc.compute() for acc in accs]

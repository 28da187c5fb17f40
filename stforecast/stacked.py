"""The optimizer steps of K runs applied to their stacked parameters at once.

``FusedTrainer`` computes the gradients of K members in one vmapped backward. Handing each
member its gradient and letting its own optimizer step (clipping, Adam, ...) costs K x (number
of parameter tensors) small kernels per step, which on a GPU takes longer than the batched
backward itself. Here the clipping and the update of all members are a handful of operations
on ``[K, D]`` tensors, whatever K and however many parameter tensors the model has.

One layout throughout: member ``k``'s parameters, flattened in ``named_parameters()`` order
and concatenated, are row ``k`` of a ``[K, D]`` tensor (``StackLayout``); its gradients and
optimizer state (``exp_avg``, ``exp_avg_sq``, ``momentum_buffer``) are rows of ``[K, D]``
tensors in the same layout. Per-parameter views of it are ``[K, *shape]``.

Each member keeps its own torch optimizer and genuine torch scheduler: the scheduler goes on
stepping that optimizer, and every step reads the rate (and betas, momentum, weight decay)
from ``optimizer.param_groups[0]`` of every member, so a schedule is never re-implemented.
The stacked optimizer state lives here during an epoch and is written back into each member
optimizer's ``state`` (``write_back``) in exactly the form torch keeps it, so a member can be
checkpointed and resumed on its own.

Covered: ``torch.optim.Adam`` (coupled L2 weight decay) and ``AdamW`` (decoupled), and
``torch.optim.SGD`` (momentum, dampening, Nesterov, weight decay), with one parameter group.
Anything else (schedule-free AdamW, amsgrad, maximize, several groups) is reported by
``stacked_kind`` as ``None`` and keeps stepping per member. The arithmetic follows torch's
single-tensor implementations operation by operation, with each scalar turned into a
per-member ``[K, 1]`` column, so results agree with torch to float32 rounding.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

ADAM, SGD = "adam", "sgd"


class StackLayout:
    """Where each named parameter of a model lives in a member's row of a ``[K, D]`` stack."""

    def __init__(self, names: list[str], shapes: list[torch.Size]) -> None:
        self.names = list(names)
        self.shapes = [torch.Size(s) for s in shapes]
        self.slices: list[slice] = []
        start = 0
        for shape in self.shapes:
            self.slices.append(slice(start, start + shape.numel()))
            start += shape.numel()
        self.dim = start  # D

    @classmethod
    def of(cls, model: nn.Module) -> StackLayout:
        named = list(model.named_parameters())
        return cls([n for n, _ in named], [p.shape for _, p in named])

    def matches(self, model: nn.Module) -> bool:
        named = list(model.named_parameters())
        return ([n for n, _ in named] == self.names
                and [p.shape for _, p in named] == self.shapes)

    def stack(self, members: list[list[torch.Tensor]]) -> torch.Tensor:
        """``[K, D]`` from K lists of tensors in layout order (a copy, detached)."""
        return torch.stack([self.flatten(tensors) for tensors in members])

    def flatten(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """One member's tensors in layout order as a ``[D]`` row (a copy, detached)."""
        return torch.cat([t.detach().reshape(-1) for t in tensors])

    def flatten_stacked(self, tensors: list[torch.Tensor | None], like: torch.Tensor
                        ) -> torch.Tensor:
        """``[K, D]`` from per-parameter ``[K, *shape]`` tensors; ``None`` (a parameter that
        got no gradient) becomes zeros, which leave the gradient norm unchanged."""
        k = like.size(0)
        return torch.cat([t.reshape(k, -1) if t is not None
                          else like.new_zeros(k, s.stop - s.start)
                          for t, s in zip(tensors, self.slices)], dim=1)

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Per-parameter ``[K, *shape]`` views of a ``[K, D]`` tensor (no copy)."""
        k = flat.size(0)
        return [flat[:, s].view(k, *shape) for s, shape in zip(self.slices, self.shapes)]

    def row(self, flat: torch.Tensor, k: int) -> list[torch.Tensor]:
        """Member ``k``'s per-parameter views of a ``[K, D]`` tensor (no copy)."""
        return [flat[k, s].view(shape) for s, shape in zip(self.slices, self.shapes)]


def stacked_kind(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> str | None:
    """``"adam"`` or ``"sgd"`` when ``optimizer``'s step over ``params`` (a model's parameters
    in layout order) can be taken on the stack; ``None`` when it must step on its own.

    Exact types only: a subclass may change ``step``. One parameter group holding the
    parameters that train (frozen ones may be in it or not), plain-number hyperparameters,
    none of the options the stacked update does not implement.
    """
    if type(optimizer) in (torch.optim.Adam, torch.optim.AdamW):
        kind = ADAM
    elif type(optimizer) is torch.optim.SGD:
        kind = SGD
    else:
        return None
    if len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    if group.get("maximize") or group.get("differentiable"):
        return None
    if kind == ADAM:
        if group.get("amsgrad"):
            return None
        numbers = [group["lr"], group["eps"], group["weight_decay"], *group["betas"]]
    else:
        numbers = [group["lr"], group["weight_decay"], group["momentum"], group["dampening"]]
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers):
        return None  # a tensor lr or beta: torch's own handling, not reproduced here
    owned = {id(p) for p in group["params"]}
    model = {id(p) for p in params}
    trained = {id(p) for p in params if p.requires_grad}
    if not (trained <= owned <= model):
        return None
    return kind


def clip_rows_(grads: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_(max_norm)`` of every row of ``[K, D]`` gradients, in place; returns
    the ``[K, 1]`` norms before clipping.

    As torch: coefficient ``max_norm / (norm + 1e-6)`` clamped to 1, multiplied in
    unconditionally (no host sync). The row norm is one reduction rather than torch's norm of
    per-tensor norms: equal up to float32 rounding.
    """
    norms = torch.linalg.vector_norm(grads, dim=1, keepdim=True)
    grads.mul_((max_norm / (norms + 1e-6)).clamp_(max=1.0))
    return norms


class _Rows:
    """The rows of the ``[K, ...]`` stack one optimizer kind owns: a slice (views, updated in
    place) when they are consecutive, else an index (gathered, updated, scattered back)."""

    def __init__(self, rows: list[int], device: torch.device) -> None:
        self.rows = rows
        first = rows[0]
        if rows == list(range(first, first + len(rows))):
            self.slice, self.index = slice(first, first + len(rows)), None
        else:
            self.slice, self.index = None, torch.tensor(rows, device=device)

    def take(self, t: torch.Tensor) -> torch.Tensor:
        return t[self.slice] if self.index is None else t.index_select(0, self.index)

    def put(self, t: torch.Tensor, part: torch.Tensor) -> None:
        if self.index is not None:
            t.index_copy_(0, self.index, part)


class _Kind:
    """Members sharing one optimizer kind: their torch optimizers, stacked state, counters.

    ``counts[r, i]`` is, per member row ``r`` and parameter ``i``, what the update needs to
    know of the past that torch keeps per parameter (Adam: its step; SGD: whether a momentum
    buffer exists). They live on the host, so coefficients are computed without a sync.
    """

    def __init__(self, rows: list[int], optimizers: list[torch.optim.Optimizer],
                 params: list[list[nn.Parameter]], layout: StackLayout, like: torch.Tensor
                 ) -> None:
        self.rows = _Rows(rows, like.device)
        self.optimizers, self.params, self.layout = optimizers, params, layout
        self.device = like.device
        self.counts = np.zeros((len(rows), len(layout.names)), dtype=np.int64)
        self.load(like)
        for opt in optimizers:
            # The flag torch's scheduler wrapper sets when ``optimizer.step()`` runs; these
            # optimizers are stepped here instead, so their schedulers need not warn that
            # they step first.
            opt._opt_called = True

    def load(self, like: torch.Tensor) -> None:
        raise NotImplementedError

    def step(self, params: torch.Tensor, grads: torch.Tensor, active: list[bool]) -> None:
        raise NotImplementedError

    def write_back(self) -> None:
        raise NotImplementedError

    def _blocks(self, active: list[bool]):
        """``(columns, per-row counts, parameter indices)`` to update together: the whole row
        when every parameter got a gradient and shares its member's count (the usual case),
        else one block per parameter that did."""
        if all(active) and (self.counts == self.counts[:, :1]).all():
            return [(slice(0, self.layout.dim), self.counts[:, 0].tolist(),
                     list(range(len(active))))]
        return [(self.layout.slices[i], self.counts[:, i].tolist(), [i])
                for i, on in enumerate(active) if on]

    def _columns(self, values: list[list[float]]) -> torch.Tensor:
        """Per-member scalars (a list per coefficient, a value per row), computed on the
        host in double precision as torch computes its Python scalars, as a float32
        ``[n_coef, rows, 1]`` tensor on the device: one transfer, no sync."""
        t = torch.tensor(values, dtype=torch.float64).to(torch.float32).unsqueeze(-1)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _groups(self):
        return [opt.param_groups[0] for opt in self.optimizers]


class _Adam(_Kind):
    """``torch.optim.Adam`` / ``AdamW`` (``_single_tensor_adam``, amsgrad off) on the stack."""

    def load(self, like: torch.Tensor) -> None:
        n, d = len(self.optimizers), self.layout.dim
        self.exp_avg = like.new_zeros(n, d)
        self.exp_avg_sq = like.new_zeros(n, d)
        for r, (opt, params) in enumerate(zip(self.optimizers, self.params)):
            steps, where = [], []
            for i, p in enumerate(params):
                state = opt.state.get(p)
                if not state:
                    continue
                s = self.layout.slices[i]
                self.exp_avg[r, s] = state["exp_avg"].reshape(-1)
                self.exp_avg_sq[r, s] = state["exp_avg_sq"].reshape(-1)
                steps.append(torch.as_tensor(state["step"]).detach().reshape(())
                             .to(torch.float64))
                where.append(i)
            if steps:  # one host read per member, not one per parameter
                for i, step in zip(where, torch.stack(steps).tolist()):
                    self.counts[r, i] = int(step)

    def step(self, params, grads, active):
        groups = self._groups()
        lr = [float(g["lr"]) for g in groups]
        b1 = [float(g["betas"][0]) for g in groups]
        b2 = [float(g["betas"][1]) for g in groups]
        wd = [float(g["weight_decay"]) for g in groups]
        decoupled = [bool(g.get("decoupled_weight_decay", False)) for g in groups]
        coupled_wd = [w if not dec else 0.0 for w, dec in zip(wd, decoupled)]
        decay = [1 - lr_ * w if dec else 1.0 for lr_, w, dec in zip(lr, wd, decoupled)]
        any_coupled = any(coupled_wd)
        any_decoupled = any(x != 1.0 for x in decay)
        for cols, counts, which in self._blocks(active):
            step = [c + 1 for c in counts]
            # torch: bias_correction1 = 1 - beta1 ** step, step_size = lr / bias_correction1,
            # bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5, all Python floats
            c = self._columns([
                coupled_wd, decay,
                [1 - x for x in b1], b2, [1 - x for x in b2],
                [lr_ / (1 - x ** s) for lr_, x, s in zip(lr, b1, step)],
                [(1 - x ** s) ** 0.5 for x, s in zip(b2, step)],
                [float(g["eps"]) for g in groups],
            ])
            p, g = params[:, cols], grads[:, cols]
            m, v = self.exp_avg[:, cols], self.exp_avg_sq[:, cols]
            # a member has one or the other (zeros and ones for the rest: exact no-ops)
            if any_decoupled:
                p.mul_(c[1])                        # param.mul_(1 - lr * weight_decay)
            if any_coupled:
                g = g + p * c[0]                    # grad.add(param, alpha=weight_decay)
            m.lerp_(g, c[2])                        # exp_avg.lerp_(grad, 1 - beta1)
            v.mul_(c[3]).addcmul_(g * c[4], g)      # .mul_(beta2).addcmul_(g, g, 1 - beta2)
            denom = (v.sqrt() / c[6]).add_(c[7])    # exp_avg_sq.sqrt() / bc2_sqrt + eps
            p.sub_(m.mul(c[5]).div_(denom))         # addcdiv_(exp_avg, denom, -step_size)
            self.counts[:, which] += 1

    def write_back(self) -> None:
        for r, (opt, params) in enumerate(zip(self.optimizers, self.params)):
            group = opt.param_groups[0]
            on_device = bool(group.get("fused")) or bool(group.get("capturable"))
            for i, p in enumerate(params):
                count = int(self.counts[r, i])
                if count == 0:
                    continue  # torch keeps no state for a parameter it never stepped
                s, shape = self.layout.slices[i], self.layout.shapes[i]
                state = opt.state[p]
                if "step" in state:
                    state["step"].fill_(count)
                else:  # as Adam._init_group creates it
                    state["step"] = torch.tensor(
                        float(count), device=p.device if on_device else "cpu",
                        dtype=torch.float32 if group.get("fused")
                        or torch.get_default_dtype() != torch.float64 else torch.float64)
                _put(state, "exp_avg", self.exp_avg[r, s].view(shape))
                _put(state, "exp_avg_sq", self.exp_avg_sq[r, s].view(shape))


class _SGD(_Kind):
    """``torch.optim.SGD`` (``_single_tensor_sgd``) on the stack; ``counts`` is 1 where a
    momentum buffer exists, which torch creates at a parameter's first step with momentum."""

    def load(self, like: torch.Tensor) -> None:
        self.buf = like.new_zeros(len(self.optimizers), self.layout.dim)
        for r, (opt, params) in enumerate(zip(self.optimizers, self.params)):
            for i, p in enumerate(params):
                buf = (opt.state.get(p) or {}).get("momentum_buffer")
                if buf is not None:
                    self.buf[r, self.layout.slices[i]] = buf.reshape(-1)
                    self.counts[r, i] = 1

    def step(self, params, grads, active):
        groups = self._groups()
        lr = [float(g["lr"]) for g in groups]
        wd = [float(g["weight_decay"]) for g in groups]
        mu = [float(g["momentum"]) for g in groups]
        damp = [float(g["dampening"]) for g in groups]
        nesterov = [bool(g["nesterov"]) for g in groups]
        moving = [m != 0 for m in mu]
        for cols, has_buf, which in self._blocks(active):
            # first buffer: grad.clone() (= 0 * zeros + 1 * grad); then
            # buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            c = self._columns([
                wd, lr, mu,
                [m if h else 0.0 for m, h in zip(mu, has_buf)],
                [1 - d if h else 1.0 for d, h in zip(damp, has_buf)],
                [float(x) for x in moving], [float(x) for x in nesterov],
            ])
            p, g = params[:, cols], grads[:, cols]
            if any(wd):
                g = g + p * c[0]                      # grad.add(param, alpha=weight_decay)
            if any(moving):
                buf = self.buf[:, cols]
                new = buf * c[3] + g * c[4]
                # members without momentum keep no buffer: theirs stays as it was
                buf.copy_(new if all(moving) else torch.where(c[5] > 0, new, buf))
                if all(moving) and not any(nesterov):
                    g = buf
                elif all(nesterov):
                    g = g + buf * c[2]                # grad.add(buf, alpha=momentum)
                else:
                    g = torch.where(c[6] > 0, g + buf * c[2], torch.where(c[5] > 0, buf, g))
                self.counts[np.ix_(moving, which)] = 1
            p.sub_(g * c[1])                          # param.add_(grad, alpha=-lr)

    def write_back(self) -> None:
        for r, (opt, params) in enumerate(zip(self.optimizers, self.params)):
            for i, p in enumerate(params):
                if self.counts[r, i]:
                    view = self.buf[r, self.layout.slices[i]].view(self.layout.shapes[i])
                    _put(opt.state[p], "momentum_buffer", view)


def _put(state: dict, key: str, value: torch.Tensor) -> None:
    """Into a member's optimizer state: in place where torch already holds that tensor (as
    its own step would), else a compact copy, never a view of the ``[K, D]`` stack (saving
    a view would write the whole stack into the member's checkpoint)."""
    old = state.get(key)
    if (isinstance(old, torch.Tensor) and old.shape == value.shape
            and old.dtype == value.dtype and old.device == value.device):
        old.copy_(value)
    else:
        state[key] = value.clone(memory_format=torch.contiguous_format)


class StackedOptimizer:
    """Clipping and optimizer step of K members on ``[K, D]`` parameters and gradients.

    ``optimizers[k]`` and ``params[k]`` (its model's parameters in ``layout`` order) are
    member ``k``'s; their state is read at construction. ``step`` updates the rows of the
    members whose kind is covered; ``fallback`` lists the others, which the caller steps
    with their own optimizer. ``write_back`` puts the state into the members' optimizers.
    """

    def __init__(self, optimizers: list[torch.optim.Optimizer],
                 params: list[list[nn.Parameter]], layout: StackLayout,
                 like: torch.Tensor, grad_clip: float | None) -> None:
        kinds = [stacked_kind(o, p) for o, p in zip(optimizers, params)]
        self.layout, self.grad_clip = layout, grad_clip
        self.kinds: list[_Kind] = []
        for kind, cls in ((ADAM, _Adam), (SGD, _SGD)):
            rows = [k for k, x in enumerate(kinds) if x == kind]
            if rows:
                self.kinds.append(cls(rows, [optimizers[k] for k in rows],
                                      [params[k] for k in rows], layout, like))
        self.fallback = [k for k, x in enumerate(kinds) if x is None]

    @property
    def rows(self) -> list[int]:
        """The members this optimizer steps."""
        return sorted(r for kind in self.kinds for r in kind.rows.rows)

    @torch.no_grad()
    def step(self, params: torch.Tensor, grads: torch.Tensor, active: list[bool]) -> None:
        """One step of the covered members: ``params`` and ``grads`` ``[K, D]`` (grads are
        clipped in place); ``active[i]`` says whether parameter ``i`` got a gradient (torch
        skips one that did not, step count included)."""
        for kind in self.kinds:
            p, g = kind.rows.take(params), kind.rows.take(grads)
            if self.grad_clip is not None:
                clip_rows_(g, self.grad_clip)
            kind.step(p, g, active)
            kind.rows.put(params, p)

    @torch.no_grad()
    def write_back(self) -> None:
        """Each member optimizer's ``state`` as torch would hold it after the same steps."""
        for kind in self.kinds:
            kind.write_back()

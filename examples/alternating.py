"""AlternatingNet: a user's own forecasting model, alternating temporal and graph convolutions.

An example of a model written outside the suite: it imports only torch and numpy, so the file
can be copied anywhere. It is the "alternating" kind of model of a tuning note's
``METR-LA_alternating.yaml``:

- embedding: each step's reading (channel ``value``) is lifted to ``hidden`` channels and
  summed with a learned per-node embedding and embeddings of the step's time of day and day
  of week (the other two channels), giving ``[B, T_in, N, hidden]``;
- ``blocks`` blocks, each a gated temporal convolution over ``kernel_size`` steps, per node
  (GLU, unpadded, so every block shortens the window by ``kernel_size - 1`` steps), then a
  graph convolution ``relu(A_hat H W)`` with ``A_hat = D^-1/2 (A + I) D^-1/2`` computed once
  from ``spec.adjacency``; both are residual (dropout on each branch, one mask per series
  and channel shared by all its steps), then LayerNorm over channels;
- head: one linear layer maps each node's remaining ``T * hidden`` features to all
  ``T_out`` steps at once, in the scaled space of the ``value`` channel.

No batch norm, so stacked parameter sets can run under ``torch.func.vmap``.

Run it with the suite::

    python -m bench run --model examples/alternating.py:AlternatingNet --profile quick \\
        --schedules seed --budgets 30 --seeds 1

(results go to ``results/quick-AlternatingNet/``: another model gets its own experiment
folder). Its options come from a profile's ``model.options``,
e.g. ``{hidden: 16, blocks: 3}``; see ``examples/profile.yaml`` and ``examples/README.md``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def normalized_adjacency(adjacency, num_nodes: int) -> np.ndarray:
    """``D^-1/2 (A + I) D^-1/2`` as float32 ``[N, N]``, with D the row sums of ``A + I``."""
    a = np.asarray(adjacency, dtype=np.float64)
    if a.shape != (num_nodes, num_nodes):
        raise ValueError(f"AlternatingNet: adjacency has shape {a.shape}, expected "
                         f"({num_nodes}, {num_nodes})")
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError("AlternatingNet: adjacency must be finite and non-negative")
    a = a + np.eye(num_nodes)
    d = a.sum(axis=1) ** -0.5  # every degree is >= 1 thanks to the self loops
    return (d[:, None] * a * d[None, :]).astype(np.float32)


class _Block(nn.Module):
    """Gated temporal convolution, then graph convolution, each residual; ``T -> T - k + 1``."""

    def __init__(self, hidden: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        # a (k, 1) convolution on [B, C, T, N]: 1-D over time, the same weights for every node
        self.tconv = nn.Conv2d(hidden, 2 * hidden, (kernel_size, 1))
        self.gconv = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def _dropout(self, h: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop.p == 0:
            return h
        # a [B, 1, N, C] mask: one draw per series and channel, shared by all its steps
        return h * self.drop(torch.ones_like(h[:, :1]))

    def forward(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        # h: [B, T, N, C]; the permutes are views (channels-last for the convolution)
        # [B, 2C, T', N] -> [B, T', N, 2C] -> GLU: first half * sigmoid(second half)
        t = F.glu(self.tconv(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), dim=-1)
        h = h[:, self.kernel_size - 1:] + self._dropout(t)  # [B, T', N, C], T' = T - k + 1
        # [N, N] @ [B, T', N, C] -> [B, T', N, C]: each node averages its neighbourhood
        g = torch.relu(self.gconv(torch.matmul(adj, h)))
        return self.norm(h + self._dropout(g))


class AlternatingNet(nn.Module):
    """Alternating gated temporal / graph convolution blocks with a linear multi-step head."""

    def __init__(self, spec, hidden: int = 32, blocks: int = 2, kernel_size: int = 3,
                 dropout: float = 0.1) -> None:
        super().__init__()
        for name, value in (("hidden", hidden), ("blocks", blocks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AlternatingNet: option '{name}' must be an integer >= 1, "
                                 f"got {value!r}")
        if (isinstance(kernel_size, bool) or not isinstance(kernel_size, int)
                or kernel_size < 1 or kernel_size % 2 == 0):
            raise ValueError("AlternatingNet: option 'kernel_size' must be an odd integer >= 1, "
                             f"got {kernel_size!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0.0 <= dropout < 1.0:
            raise ValueError(f"AlternatingNet: option 'dropout' must be in [0, 1), got {dropout!r}")
        self.out_steps = spec.input_len - blocks * (kernel_size - 1)  # steps left after blocks
        if self.out_steps < 1:
            raise ValueError(
                f"AlternatingNet: {blocks} blocks (option 'blocks') with kernel_size={kernel_size} "
                f"shorten the window by {blocks * (kernel_size - 1)} steps, but input_len is "
                f"only {spec.input_len}; use fewer blocks or a smaller kernel_size")
        if spec.adjacency is None:
            raise ValueError("AlternatingNet needs a graph: the dataset has no adjacency")
        features = tuple(spec.input_features)
        wanted = ("value", "time_of_day", "day_of_week")
        missing = [f for f in wanted if f not in features]
        if missing:
            raise ValueError(f"AlternatingNet: input features {features} lack {missing}")
        self.spec = spec
        self.num_features = len(features)
        self.i_value, self.i_tod, self.i_dow = (features.index(f) for f in wanted)

        n = spec.num_nodes
        # [N, N], fixed by the data: a buffer follows .to(device) but is neither trained nor saved
        self.register_buffer("adj", torch.from_numpy(normalized_adjacency(spec.adjacency, n)),
                             persistent=False)
        self.value_emb = nn.Linear(1, hidden)
        self.node_emb = nn.Parameter(torch.empty(n, hidden))
        self.tod_emb = nn.Parameter(torch.empty(spec.steps_per_day, hidden))
        self.dow_emb = nn.Parameter(torch.empty(7, hidden))
        for p in (self.node_emb, self.tod_emb, self.dow_emb):
            nn.init.xavier_uniform_(p)
        self.blocks = nn.ModuleList(_Block(hidden, kernel_size, dropout) for _ in range(blocks))
        self.head = nn.Linear(self.out_steps * hidden, spec.output_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        expected = (spec.input_len, spec.num_nodes, self.num_features)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"AlternatingNet: expected input [B, {spec.input_len}, "
                             f"{spec.num_nodes}, {self.num_features}], got {tuple(x.shape)}")
        b, _, n, _ = x.shape
        spd = spec.steps_per_day
        tod = (x[..., self.i_tod] * spd).long().clamp(0, spd - 1)  # [B, T, N], step of the day
        dow = x[..., self.i_dow].long().clamp(0, 6)  # [B, T, N], 0 = Monday
        h = (self.value_emb(x[..., self.i_value:self.i_value + 1])  # [B, T, N, C]
             + self.node_emb  # [N, C], broadcast over B and T
             + self.tod_emb[tod]  # [B, T, N, C]
             + self.dow_emb[dow])  # [B, T, N, C]
        for block in self.blocks:
            h = block(h, self.adj)  # [B, T - k + 1, N, C]
        h = h.permute(0, 2, 1, 3).reshape(b, n, -1)  # [B, N, T'*C]: each node's whole window
        out = self.head(h)  # [B, N, T_out]
        return out.transpose(1, 2).unsqueeze(-1)  # [B, T_out, N, 1]

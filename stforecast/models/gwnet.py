"""Graph WaveNet: gated dilated TCN + diffusion graph convolution (Wu et al., IJCAI 2019).

Follows the reference implementation (github.com/nnzhan/Graph-WaveNet, ``model.py``) in the
configuration its paper reports as best (``--gcn_bool --addaptadj --randomadj``, adjacency
type ``doubletransition``):

- a 1x1 start convolution lifts speed and time of day (``in_dim=2``) to ``residual_channels``;
  the input is left-padded with zeros to the receptive field (13 steps at the defaults);
- ``blocks`` x ``layers`` gated layers, each a dilated temporal convolution (kernel 2,
  dilations 1, 2, ... restarting per block) as ``tanh(filter) * sigmoid(gate)``, a 1x1 skip
  convolution, a diffusion graph convolution of order 2 over the forward and backward
  transition matrices and the adaptive adjacency ``softmax(relu(E1 @ E2))``, a residual
  connection and BatchNorm;
- the skip sum goes through ReLU, two 1x1 end convolutions, and the last one emits all
  ``L_out`` horizons as channels at the single remaining time step.

Tensors stay in the project layout ``[B, T, N, C]`` throughout. The reference's 1x1 and
``(1, k)`` convolutions on ``[B, C, N, T]`` are written as ``nn.Linear`` over the channel axis
(the taps of a dilated convolution stacked on channels; filter and gate as one layer), and its
BatchNorm2d as BatchNorm1d over the flattened ``B*T*N`` rows: the same arithmetic and
parameter count, with no layout permutes. Skip projections are computed for the newest step
only, the one step the output reads. On a CPU these together roughly halve the step time.

The forecast is the same function of the input as the reference's, but parameters that never
receive a gradient there are not built: the 1x1 ``residual_convs`` (used only when graph
convolution is off; 8 x 1,056 parameters) and the last layer's graph convolution and
BatchNorm, whose output only feeds the residual stream after the final layer, which nothing
reads (7,200 + 64). The reference counts 309,400 parameters for 207 sensors; this module has
309,400 - 8,448 - 7,264 = 293,688.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stforecast.graph import double_transition
from stforecast.models.registry import DataSpec, check_input, register_model, require_adjacency


@dataclass(frozen=True)
class GWNetConfig:
    in_dim: int = 2                 # input channels taken from x: 1 speed, 2 + time of day, 3 + dow
    residual_channels: int = 32
    dilation_channels: int = 32
    skip_channels: int = 256
    end_channels: int = 512
    kernel_size: int = 2            # temporal kernel of the dilated convolutions
    blocks: int = 4
    layers: int = 2                 # layers per block; dilation doubles within a block
    gcn_order: int = 2              # diffusion steps per support
    adaptive_adj: bool = True       # learn softmax(relu(E1 @ E2)) as an extra support
    node_emb_dim: int = 10          # width of E1, E2
    dropout: float = 0.3            # after each graph convolution


def _diffuse(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """One diffusion step on ``[B, T, N, C]``: ``out[..., w, :] = sum_v a[v, w] x[..., v, :]``.

    The reference's ``einsum('ncvl,vw->ncwl')``; with the row-normalised ``D^-1 W`` it moves
    a signal along the edges from ``v`` to ``w``.
    """
    return torch.matmul(a.transpose(0, 1), x)  # [N, N] @ [B, T, N, C] -> [B, T, N, C]


class _DilatedConv(nn.Module):
    """A valid temporal convolution (kernel ``k``, dilation ``d``) on ``[B, T, N, C]``.

    The ``k`` taps are stacked on channels and mixed by one linear layer: the arithmetic and
    parameter count of the reference's ``Conv2d(kernel_size=(1, k), dilation=d)``.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation
        self.linear = nn.Linear(kernel_size * c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t_out = x.size(1) - self.dilation * (self.kernel_size - 1)
        taps = [x[:, i * self.dilation: i * self.dilation + t_out]
                for i in range(self.kernel_size)]
        return self.linear(torch.cat(taps, dim=-1))  # [B, T_out, N, C_out]


class _DiffusionConv(nn.Module):
    """``[x, A_1 x, A_1^2 x, ..., A_S^K x]`` stacked on channels, then a linear layer."""

    def __init__(self, c_in: int, c_out: int, num_supports: int, order: int,
                 dropout: float) -> None:
        super().__init__()
        self.order = order
        self.mlp = nn.Linear((order * num_supports + 1) * c_in, c_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, supports: list[torch.Tensor]) -> torch.Tensor:
        out = [x]
        for a in supports:
            h = x
            for _ in range(self.order):
                h = _diffuse(h, a)
                out.append(h)
        return self.drop(self.mlp(torch.cat(out, dim=-1)))  # [B, T, N, C_out]


class _GatedLayer(nn.Module):
    """Gated dilated TCN, skip output, graph convolution, residual add, BatchNorm."""

    def __init__(self, cfg: GWNetConfig, dilation: int, num_supports: int,
                 residual_out: bool = True) -> None:
        super().__init__()
        r, d = cfg.residual_channels, cfg.dilation_channels
        # filter and gate convolutions read the same taps, so they run as one layer
        self.filter_gate_conv = _DilatedConv(r, 2 * d, cfg.kernel_size, dilation)
        self.skip_conv = nn.Linear(d, cfg.skip_channels)
        # The last layer contributes only its skip output; its residual branch would be dead.
        self.gconv = (_DiffusionConv(d, r, num_supports, cfg.gcn_order, cfg.dropout)
                      if residual_out else None)
        self.bn = nn.BatchNorm1d(r) if residual_out else None

    def forward(self, x: torch.Tensor, supports: list[torch.Tensor]
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
        # x: [B, T, N, R]; the dilated convolution shortens time to T' = T - dilation*(k-1)
        filt, gate = self.filter_gate_conv(x).chunk(2, dim=-1)  # [B, T', N, D] each
        h = torch.tanh(filt) * torch.sigmoid(gate)  # [B, T', N, D]
        # Only the newest step of the skip sum reaches the output, so only it is projected.
        skip = self.skip_conv(h[:, -1])  # [B, N, S]
        if self.gconv is None:
            return None, skip
        h = self.gconv(h, supports) + x[:, -h.size(1):]  # [B, T', N, R]
        # BatchNorm2d over [B, R, N, T'] == BatchNorm1d over the rows of [B*T'*N, R]
        return self.bn(h.reshape(-1, h.size(-1))).view(h.shape), skip


@register_model("gwnet", "Graph WaveNet (Wu et al. 2019): gated dilated TCN + "
                "diffusion and adaptive graph convolution")
class GWNet(nn.Module):
    def __init__(self, config: GWNetConfig, spec: DataSpec) -> None:
        super().__init__()
        if not 1 <= config.in_dim <= 3:
            raise ValueError(f"in_dim must be 1, 2 or 3 (input channels), got {config.in_dim}")
        self.config, self.spec = config, spec
        adj = require_adjacency(spec, "gwnet")
        # [2, N, N]: forward and backward random-walk transition matrices
        self.register_buffer("transitions", torch.from_numpy(np.stack(double_transition(adj))),
                             persistent=False)
        num_supports = 2
        if config.adaptive_adj:
            n, e = spec.num_nodes, config.node_emb_dim
            self.node_emb1 = nn.Parameter(torch.randn(n, e))  # E1 [N, e]
            self.node_emb2 = nn.Parameter(torch.randn(e, n))  # E2 [e, N]
            num_supports += 1

        self.start_conv = nn.Linear(config.in_dim, config.residual_channels)
        layers = []
        receptive_field = 1
        total = config.blocks * config.layers
        for _ in range(config.blocks):
            for i in range(config.layers):
                dilation = 2 ** i
                last = len(layers) == total - 1
                layers.append(_GatedLayer(config, dilation, num_supports, residual_out=not last))
                receptive_field += dilation * (config.kernel_size - 1)
        self.layers = nn.ModuleList(layers)
        self.receptive_field = receptive_field
        self.end_conv1 = nn.Linear(config.skip_channels, config.end_channels)
        self.end_conv2 = nn.Linear(config.end_channels, spec.output_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.spec)
        h = x[..., : self.config.in_dim]  # [B, L_in, N, C_in]
        if h.size(1) < self.receptive_field:
            h = F.pad(h, (0, 0, 0, 0, self.receptive_field - h.size(1), 0))  # [B, RF, N, C_in]
        h = self.start_conv(h)  # [B, T, N, R]

        supports = list(self.transitions.unbind(0))
        if self.config.adaptive_adj:
            # [N, N], rows sum to 1; computed once per forward, shared by all layers
            supports.append(F.softmax(F.relu(self.node_emb1 @ self.node_emb2), dim=1))

        # The reference sums the skip outputs over the steps that survive the last layer:
        # one, the newest, when L_in is at most the receptive field. The newest step is read
        # here whatever L_in, so each layer contributes only its newest skip step; for
        # L_in <= receptive field this is exactly the reference's sum.
        skip = 0
        for layer in self.layers:
            h, s = layer(h, supports)
            skip = skip + s  # [B, N, S]

        out = F.relu(skip)  # [B, N, S]
        out = F.relu(self.end_conv1(out))  # [B, N, E]
        return self.end_conv2(out).transpose(1, 2).unsqueeze(-1)  # [B, L_out, N, 1]

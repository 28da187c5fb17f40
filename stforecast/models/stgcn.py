"""STGCN: alternating gated temporal and Chebyshev graph convolutions (Yu et al., IJCAI 2018).

The "sandwich" model: each ST-Conv block is a gated temporal convolution (GLU, kernel
``Kt``), a spatial Chebyshev graph convolution (order ``Ks - 1`` on the scaled Laplacian) with
ReLU, a second gated temporal convolution, LayerNorm over ``[N, C]`` and dropout. Widths follow
the paper (64, 16, 64 per block: the spatial layer is a bottleneck). The output block is the
authors' reference (github.com/VeritasYin/STGCN_IJCAI-18, ``output_layer``): a gated temporal
convolution spanning all remaining steps, LayerNorm, a 1x1 convolution with sigmoid, and a
fully connected layer with a per-node bias.

Differences from the reference code, each for a reason:

- it predicts one step and rolls out autoregressively; here the final layer emits all
  ``L_out`` horizons at once, as the other models do, so one forward gives the whole forecast;
- its second temporal convolution in a block uses ReLU where the paper says gated; the paper
  is followed (both GLU);
- it trains with ``keep_prob=1.0``, so the dropout default here is 0.

Residual paths match the reference: a temporal or spatial layer adds its input, zero-padded
on channels when it widens and passed through a bias-free 1x1 convolution when it narrows.
Tensors stay in the project layout ``[B, T, N, C]``; the reference's ``(kt, 1)`` and 1x1
convolutions are written as ``nn.Linear`` over the channel axis (taps stacked on channels),
the same arithmetic and parameter count without layout permutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stforecast.graph import scaled_laplacian
from stforecast.models.registry import DataSpec, check_input, register_model, require_adjacency


@dataclass(frozen=True)
class STGCNConfig:
    temporal_channels: int = 64     # output width of both temporal convolutions in a block
    spatial_channels: int = 16      # output width of the graph convolution (bottleneck)
    num_blocks: int = 2
    kt: int = 3                     # temporal kernel size
    ks: int = 3                     # Chebyshev polynomials T_0 .. T_{ks-1}
    use_time_of_day: bool = False   # input speed only (paper) or speed + time of day
    dropout: float = 0.0            # after each block's LayerNorm


def _laplacian(spec: DataSpec, model: str) -> np.ndarray:
    """The scaled Laplacian of ``spec.adjacency``, which must be present and ``[N, N]``."""
    return scaled_laplacian(require_adjacency(spec, model))


def chebyshev_basis(lap: np.ndarray, ks: int) -> np.ndarray:
    """``[ks, N, N]``: ``T_0 = I``, ``T_1 = L``, ``T_k = 2 L T_{k-1} - T_{k-2}``."""
    n = len(lap)
    basis = [np.eye(n), np.asarray(lap, dtype=np.float64)][:ks]
    while len(basis) < ks:
        basis.append(2.0 * lap @ basis[-1] - basis[-2])
    return np.stack(basis).astype(np.float32)


class _Align(nn.Module):
    """The residual path from ``c_in`` to ``c_out`` channels on ``[B, T, N, C]``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.proj = nn.Linear(c_in, c_out, bias=False) if c_in > c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            return self.proj(x)
        if self.c_in < self.c_out:
            return F.pad(x, (0, self.c_out - self.c_in))  # zeros on the channel axis
        return x


class _TemporalGLU(nn.Module):
    """``(P + residual) * sigmoid(Q)`` with ``[P, Q]`` a valid convolution over ``kt`` steps.

    The ``kt`` taps are stacked on channels and mixed by one linear layer: the arithmetic and
    parameter count of the reference's ``(kt, 1)`` convolution, without layout permutes.
    """

    def __init__(self, c_in: int, c_out: int, kt: int) -> None:
        super().__init__()
        self.kt, self.c_out = kt, c_out
        self.align = _Align(c_in, c_out)
        self.conv = nn.Linear(kt * c_in, 2 * c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t_out = x.size(1) - self.kt + 1
        taps = torch.cat([x[:, i:i + t_out] for i in range(self.kt)], dim=-1)  # [B, T', N, kt*C]
        p, q = self.conv(taps).split(self.c_out, dim=-1)  # [B, T', N, C_out] each
        return (p + self.align(x[:, self.kt - 1:])) * torch.sigmoid(q)


class _ChebConv(nn.Module):
    """``relu(sum_k T_k(L) X Theta_k + b + residual)`` on ``[B, T, N, C]``."""

    def __init__(self, c_in: int, c_out: int, ks: int) -> None:
        super().__init__()
        self.align = _Align(c_in, c_out)
        self.theta = nn.Linear(ks * c_in, c_out)

    def forward(self, x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        b, t, n, _ = x.shape
        ks = basis.size(0)
        # [Ks*N, N] @ [B, T, N, C] -> [B, T, Ks*N, C]: T_k(L) x for every k in one product
        h = torch.matmul(basis.reshape(ks * n, n), x)
        h = h.view(b, t, ks, n, -1).transpose(2, 3).reshape(b, t, n, -1)  # [B, T, N, Ks*C]
        return torch.relu(self.theta(h) + self.align(x))  # [B, T, N, C_out]


class _STConvBlock(nn.Module):
    def __init__(self, c_in: int, cfg: STGCNConfig, num_nodes: int) -> None:
        super().__init__()
        ct, cs = cfg.temporal_channels, cfg.spatial_channels
        self.tconv1 = _TemporalGLU(c_in, ct, cfg.kt)
        self.sconv = _ChebConv(ct, cs, cfg.ks)
        self.tconv2 = _TemporalGLU(cs, ct, cfg.kt)
        self.norm = nn.LayerNorm([num_nodes, ct], eps=1e-6)  # over [N, C], as the reference
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        # [B, T, N, C_in] -> [B, T - 2 (kt - 1), N, C_t]
        h = self.tconv2(self.sconv(self.tconv1(x), basis))
        return self.drop(self.norm(h))


@register_model("stgcn", "STGCN (Yu et al. 2018): gated temporal conv / Chebyshev "
                "graph conv / gated temporal conv blocks")
class STGCN(nn.Module):
    def __init__(self, config: STGCNConfig, spec: DataSpec) -> None:
        super().__init__()
        self.config, self.spec = config, spec
        lap = _laplacian(spec, "stgcn")
        self.remaining_steps = spec.input_len - 2 * config.num_blocks * (config.kt - 1)
        if self.remaining_steps < 1:
            raise ValueError(
                f"stgcn: input_len {spec.input_len} is too short for {config.num_blocks} blocks "
                f"of two temporal convolutions with kt={config.kt}; need at least "
                f"{2 * config.num_blocks * (config.kt - 1) + 1}"
            )
        # [Ks, N, N] Chebyshev polynomials of the scaled Laplacian
        self.register_buffer("cheb_basis", torch.from_numpy(chebyshev_basis(lap, config.ks)),
                             persistent=False)
        self.in_channels = 2 if config.use_time_of_day else 1
        ct, n = config.temporal_channels, spec.num_nodes
        self.blocks = nn.ModuleList(
            _STConvBlock(self.in_channels if i == 0 else ct, config, n)
            for i in range(config.num_blocks)
        )
        self.out_tconv = _TemporalGLU(ct, ct, self.remaining_steps)  # all remaining steps -> 1
        self.out_norm = nn.LayerNorm([n, ct], eps=1e-6)
        self.out_conv = nn.Linear(ct, ct)  # the reference's 1x1 convolution
        self.fc = nn.Linear(ct, spec.output_len, bias=False)
        self.fc_bias = nn.Parameter(torch.zeros(n, spec.output_len))  # per node, as reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.spec)
        h = x[..., : self.in_channels]  # [B, L_in, N, C_in]
        for block in self.blocks:
            h = block(h, self.cheb_basis)  # [B, T', N, C_t]
        h = self.out_norm(self.out_tconv(h))  # [B, 1, N, C_t]
        h = torch.sigmoid(self.out_conv(h[:, 0]))  # [B, N, C_t]
        out = self.fc(h) + self.fc_bias  # [B, N, L_out]
        return out.transpose(1, 2).unsqueeze(-1)  # [B, L_out, N, 1]

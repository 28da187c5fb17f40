"""STID: spatial and temporal identity embeddings + MLP (Shao et al., CIKM 2022).

The CPU-friendly default. Each sensor's last ``L_in`` scaled readings are embedded by one
linear layer and concatenated with a learned per-node embedding and embeddings of the time
of day and day of week of the last input step; residual MLP blocks then regress all
``L_out`` steps at once. Sizes and initialisation follow the reference implementation
(BasicTS ``STID``); its 1x1 convolutions are written as the equivalent ``nn.Linear`` over the
channel axis, which is the same arithmetic with the same parameter count (117,100 for
METR-LA's 207 sensors at the defaults below).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from stforecast.models.registry import DataSpec, check_input, register_model


@dataclass(frozen=True)
class STIDConfig:
    embed_dim: int = 32      # width of the series embedding
    node_dim: int = 32       # width of the spatial identity embedding
    tod_dim: int = 32        # time-of-day embedding
    dow_dim: int = 32        # day-of-week embedding
    num_layers: int = 3      # residual MLP blocks
    dropout: float = 0.15


class _ResidualMLP(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(self.drop(torch.relu(self.fc1(h))))


@register_model("stid", "STID (Shao et al. 2022): identity embeddings + MLP; "
                "fast on CPU, the default")
class STID(nn.Module):
    def __init__(self, config: STIDConfig, spec: DataSpec) -> None:
        super().__init__()
        self.config, self.spec = config, spec
        self.series_emb = nn.Linear(spec.input_len, config.embed_dim)
        self.node_emb = nn.Parameter(torch.empty(spec.num_nodes, config.node_dim))
        self.tod_emb = nn.Parameter(torch.empty(spec.steps_per_day, config.tod_dim))
        self.dow_emb = nn.Parameter(torch.empty(7, config.dow_dim))
        for p in (self.node_emb, self.tod_emb, self.dow_emb):
            nn.init.xavier_uniform_(p)
        hidden = config.embed_dim + config.node_dim + config.tod_dim + config.dow_dim
        self.encoder = nn.Sequential(
            *[_ResidualMLP(hidden, config.dropout) for _ in range(config.num_layers)]
        )
        self.head = nn.Linear(hidden, spec.output_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.spec)
        b, _, n, _ = x.shape
        series = x[..., 0].transpose(1, 2)  # [B, N, L_in]
        last = x[:, -1]  # [B, N, 3], calendar of the last input step
        tod = (last[..., 1] * self.spec.steps_per_day).long().clamp(0, self.spec.steps_per_day - 1)
        dow = last[..., 2].long()
        h = torch.cat([
            self.series_emb(series),                      # [B, N, embed_dim]
            self.node_emb.expand(b, n, -1),               # [B, N, node_dim]
            self.tod_emb[tod],                            # [B, N, tod_dim]
            self.dow_emb[dow],                            # [B, N, dow_dim]
        ], dim=-1)
        out = self.head(self.encoder(h))  # [B, N, L_out]
        return out.transpose(1, 2).unsqueeze(-1)  # [B, L_out, N, 1]

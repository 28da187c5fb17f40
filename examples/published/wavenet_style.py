"""A forecasting model written the way published traffic models are: the suite's stand-in
for an authors' file that an adapter wraps without editing it (see adapter.py beside it and
docs/own-model.md).

It keeps the conventions of Graph WaveNet's reference ``model.py`` that make plugging such a
model in take care: the input is ``[B, in_dim, N, T]`` (channels first, time last), the
constructor takes ``device``, ``num_nodes`` and a *list* of support matrices that it keeps
in a plain attribute, and the output is ``[B, out_dim, N, 1]`` with the horizons as
channels. Inside: a 1x1 start convolution, gated dilated temporal convolutions, a diffusion
graph convolution over every support and a learned adaptive adjacency, skip connections and
two 1x1 end convolutions. Imports only torch.
"""

import torch
import torch.nn.functional as F
from torch import nn


class nconv(nn.Module):
    def forward(self, x, A):
        # x [B, C, N, T], A [N, N]: out[:, :, w] = sum_v x[:, :, v] A[v, w]
        return torch.einsum("ncvl,vw->ncwl", x, A).contiguous()


class gcn(nn.Module):
    def __init__(self, c_in, c_out, dropout, support_len=3, order=2):
        super().__init__()
        self.nconv = nconv()
        self.mlp = nn.Conv2d((order * support_len + 1) * c_in, c_out, (1, 1))
        self.dropout, self.order = dropout, order

    def forward(self, x, support):
        out = [x]
        for a in support:
            x1 = self.nconv(x, a)
            out.append(x1)
            for _ in range(2, self.order + 1):
                x1 = self.nconv(x1, a)
                out.append(x1)
        h = self.mlp(torch.cat(out, dim=1))
        return F.dropout(h, self.dropout, training=self.training)


class wavenet_style(nn.Module):
    def __init__(self, device, num_nodes, dropout=0.3, supports=None, in_dim=2, out_dim=12,
                 residual_channels=16, dilation_channels=16, skip_channels=32,
                 end_channels=64, kernel_size=2, layers=3, apt_dim=10):
        super().__init__()
        self.dropout, self.layers = dropout, layers
        self.supports = supports  # a plain list, as published: .to(device) does not move it
        self.start_conv = nn.Conv2d(in_dim, residual_channels, (1, 1))
        self.nodevec1 = nn.Parameter(torch.randn(num_nodes, apt_dim, device=device))
        self.nodevec2 = nn.Parameter(torch.randn(apt_dim, num_nodes, device=device))
        support_len = (len(supports) if supports is not None else 0) + 1
        self.filter_convs, self.gate_convs = nn.ModuleList(), nn.ModuleList()
        self.skip_convs, self.gconv, self.bn = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.dilations = [2 ** i for i in range(layers)]
        for d in self.dilations:
            self.filter_convs.append(nn.Conv2d(residual_channels, dilation_channels,
                                               (1, kernel_size), dilation=d))
            self.gate_convs.append(nn.Conv2d(residual_channels, dilation_channels,
                                             (1, kernel_size), dilation=d))
            self.skip_convs.append(nn.Conv2d(dilation_channels, skip_channels, (1, 1)))
            self.gconv.append(gcn(dilation_channels, residual_channels, dropout, support_len))
            self.bn.append(nn.BatchNorm2d(residual_channels))
        self.receptive_field = 1 + (kernel_size - 1) * sum(self.dilations)
        self.end_conv_1 = nn.Conv2d(skip_channels, end_channels, (1, 1))
        self.end_conv_2 = nn.Conv2d(end_channels, out_dim, (1, 1))

    def forward(self, input):
        # input [B, in_dim, N, T]; left-pad time to the receptive field
        if input.size(3) < self.receptive_field:
            input = F.pad(input, (self.receptive_field - input.size(3), 0, 0, 0))
        x = self.start_conv(input)
        adp = F.softmax(F.relu(torch.mm(self.nodevec1, self.nodevec2)), dim=1)
        supports = list(self.supports or []) + [adp]
        skip = 0
        for i in range(self.layers):
            residual = x
            gate = torch.sigmoid(self.gate_convs[i](residual))
            x = torch.tanh(self.filter_convs[i](residual)) * gate
            s = self.skip_convs[i](x)
            skip = s + (skip[:, :, :, -s.size(3):] if torch.is_tensor(skip) else 0)
            x = self.gconv[i](x, supports)
            x = x + residual[:, :, :, -x.size(3):]
            x = self.bn[i](x)
        x = F.relu(skip[:, :, :, -1:])
        x = F.relu(self.end_conv_1(x))
        return self.end_conv_2(x)  # [B, out_dim, N, 1]

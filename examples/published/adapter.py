"""The suite's contract around ``wavenet_style.py``, which stays as its authors wrote it.

Run it from the repository root::

    python -m bench run --model examples/published/adapter.py:WaveNetAdapter --profile quick \
        --schedules seed --budgets 30 --seeds 1

The adapter does four things, and nothing else:

1. imports the authors' file beside it (its folder is importable while the suite imports
   this file, as ``python adapter.py`` would have it; both files are fingerprinted);
2. builds the graph in the form the model expects from ``spec.adjacency_as`` (Graph WaveNet's
   ``doubletransition``: forward and backward random-walk transitions) and keeps it in
   **buffers**, so that ``.to(device)`` moves it; ``_apply`` points the authors' plain list at
   the moved buffers after every move;
3. maps the suite's ``[B, T_in, N, F]`` to the model's ``[B, in_dim, N, T_in]`` and its
   ``[B, T_out, N, 1]`` output (horizons as channels) back to ``[B, T_out, N, 1]``;
4. exposes the options worth tuning as typed constructor parameters, so ``--model-option
   hidden=32`` is checked before anything runs.
"""

import torch
from torch import nn
from wavenet_style import wavenet_style


class WaveNetAdapter(nn.Module):
    """A Graph WaveNet-style model (examples/published/wavenet_style.py) behind the suite's
    contract."""

    def __init__(self, spec, hidden: int = 16, layers: int = 3, dropout: float = 0.3,
                 in_dim: int = 2):
        super().__init__()
        if not 1 <= in_dim <= spec.num_features:
            raise ValueError(f"in_dim must be in [1, {spec.num_features}], got {in_dim}")
        self.in_dim = in_dim
        for i, form in enumerate(("random_walk", "reverse_random_walk")):
            self.register_buffer(f"support{i}", torch.from_numpy(spec.adjacency_as(form)))
        self.net = wavenet_style("cpu", spec.num_nodes, dropout=dropout,
                                 supports=self._supports(), in_dim=in_dim,
                                 out_dim=spec.output_len, residual_channels=hidden,
                                 dilation_channels=hidden, layers=layers)

    def _supports(self) -> list:
        return [self.support0, self.support1]

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.net.supports = self._supports()  # the buffers, wherever .to() moved them
        return self

    def forward(self, x):                                # [B, T_in, N, F]
        h = x[..., :self.in_dim].permute(0, 3, 2, 1)     # [B, in_dim, N, T_in]
        return self.net(h)                               # [B, T_out, N, 1]

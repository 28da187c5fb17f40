"""``torch.compile`` for a training run, with the one CPU setting that makes it pay off.

Measured on the default profile (STID, 48 sensors, batch 64, one thread, torch 2.13, an
AVX-512 Xeon): with torch's defaults a compiled training step took 1.8 to 2.05x the eager
step. ``torch.profiler`` put almost half of the compiled step in three forward kernels, one per
residual block, that each store a ReLU's ``output <= 0`` as a bool mask for the backward:
Inductor's vectorised CPU code stores a bool tensor about 25x slower than eager computes the
same comparison (1.9 ms against 0.08 ms for a 64x48x64 tensor; 0.14 ms with vectorisation
off, so it is the vector bool store, on AVX2 as on AVX-512). The mask is saved because
AOTAutograd's partitioner will not recompute in the backward a value the backward
"materialises" (``ban_recompute_materialized_backward``). Allowing that recomputation
removes the three stores and the bool tensors altogether, and the compiled step takes 0.83 to
0.94x the eager one (``python -m bench perf --levers`` reports the ratio and the change in
results). It was no graph break: the graph is one, with none.

On a GPU the model compiles with torch's defaults (the slow store is in Inductor's C++ code
for the CPU; nothing here was measured on a GPU), so compiled GPU runs are unchanged by this
module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def compile_model(model: nn.Module, device: torch.device) -> None:
    """``torch.compile`` ``model`` in place (parameter names and checkpoints stay the same),
    through ``cpu_inductor`` on the CPU and torch's default backend elsewhere."""
    model.compile(backend=cpu_inductor if device.type == "cpu" else "inductor")


def cpu_inductor(graph: torch.fx.GraphModule, example_inputs: list[Any]):
    """Inductor, with the backward allowed to recompute what it materialises (see above).

    The setting is scoped to this compilation (the partitioner runs inside ``compile_fx``),
    so other compiled code in the process keeps torch's defaults; a recompilation passes
    through here again and gets it too.
    """
    import torch._functorch.config as functorch_config
    from torch._inductor.compile_fx import compile_fx

    with functorch_config.patch(ban_recompute_materialized_backward=False):
        return compile_fx(graph, example_inputs)

"""torch.compile on the CPU (stforecast.compilation): no bool mask saved for the backward,
and the same gradients as the eager model."""

import pytest
import torch

from stforecast.compilation import compile_model
from stforecast.models import DataSpec, build_model

SPEC = DataSpec(num_nodes=5)
OPTIONS = {"embed_dim": 8, "node_dim": 8, "tod_dim": 8, "dow_dim": 8, "num_layers": 3,
           "dropout": 0.0}


def batch(b: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    value = torch.randn(b, 12, 5, 1, generator=g)
    tod = torch.rand(b, 12, 5, 1, generator=g)
    dow = torch.randint(0, 7, (b, 12, 5, 1), generator=g).float()
    return torch.cat([value, tod, dow], dim=-1)


def stid() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("stid", SPEC, OPTIONS)


def saved_dtypes(model: torch.nn.Module, x: torch.Tensor) -> list[torch.dtype]:
    """The dtypes of the tensors a forward pass saves for its backward."""
    model(x).sum().backward()  # compiles (forward and backward) outside the hooks
    dtypes = []

    def pack(t):
        dtypes.append(t.dtype)
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return dtypes


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_cpu_compile_saves_no_bool_mask_where_torch_defaults_do():
    x = batch()
    default = stid()
    default.compile()
    # The case the module exists for: torch's defaults save one ReLU mask per block.
    assert saved_dtypes(default, x).count(torch.bool) == OPTIONS["num_layers"]
    torch._dynamo.reset()
    ours = stid()
    compile_model(ours, torch.device("cpu"))
    dtypes = saved_dtypes(ours, x)
    assert torch.bool not in dtypes and torch.float32 in dtypes


def test_cpu_compile_matches_eager_gradients():
    x = batch(8)
    eager, compiled = stid(), stid()
    compile_model(compiled, torch.device("cpu"))
    for model in (eager, compiled):
        model(x).square().mean().backward()
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
    # Compiled in place: the names a checkpoint uses are unchanged.
    assert [n for n, _ in compiled.named_parameters()] == [n for n, _ in eager.named_parameters()]

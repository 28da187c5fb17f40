"""Every registered model: shapes, input checks, gradient flow, capacity, determinism, sizes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from stforecast.models import DataSpec, ModelError, build_model, count_parameters, model_names
from stforecast.models.registry import get_model
from stforecast.models.stgcn import chebyshev_basis

GRAPH_MODELS = {"gwnet", "stgcn"}
N, B, L = 8, 4, 12


def _adjacency(n: int, seed: int = 0) -> np.ndarray:
    """A random directed, non-negative graph with about 40 % of edges and no self-loops."""
    rng = np.random.default_rng(seed)
    w = rng.random((n, n)) * (rng.random((n, n)) < 0.4)
    np.fill_diagonal(w, 0.0)
    return w.astype(np.float32)


def _spec(n: int = N) -> DataSpec:
    return DataSpec(num_nodes=n, input_len=L, output_len=L, adjacency=_adjacency(n))


def _inputs(b: int = B, n: int = N, seed: int = 0) -> torch.Tensor:
    """``[B, L, N, 3]`` shaped like real windows: z-scored speed, time of day, day of week."""
    g = torch.Generator().manual_seed(seed)
    speed = torch.randn(b, L, n, generator=g)
    tod = torch.rand(b, 1, 1, generator=g) + torch.arange(L).view(1, L, 1) / 288.0
    tod = (tod % 1.0).expand(b, L, n)
    dow = torch.randint(0, 7, (b, 1, 1), generator=g).float().expand(b, L, n)
    return torch.stack([speed, tod, dow], dim=-1)


def _no_dropout(name: str) -> dict:
    fields = {f.name for f in dataclasses.fields(get_model(name).config_cls)}
    return {"dropout": 0.0} if "dropout" in fields else {}


def test_graph_models_are_registered():
    assert GRAPH_MODELS | {"stid"} <= set(model_names())


@pytest.mark.parametrize("name", model_names())
def test_output_shape(name):
    model = build_model(name, _spec())
    out = model(_inputs())
    assert out.shape == (B, L, N, 1)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("shape", [(B, L + 1, N, 3), (B, L, N + 1, 3), (L, N, 3)])
def test_wrong_input_shape_raises(name, shape):
    model = build_model(name, _spec())
    with pytest.raises(ValueError, match="expected input"):
        model(torch.zeros(shape))


@pytest.mark.parametrize("name", model_names())
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = build_model(name, _spec())
    model.train()
    model(_inputs()).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("name", model_names())
def test_overfits_one_batch(name):
    torch.manual_seed(0)
    model = build_model(name, _spec(), _no_dropout(name))
    model.train()
    x = _inputs()
    y = torch.randn(B, L, N, 1, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # Random targets, so only memorisation lowers the loss. Over ten seeds of weights and
    # data the worst final/initial ratio was 0.002 (gwnet), far below this bound.
    assert losses[-1] < 0.05 * losses[0], f"{name}: {losses[0]:.4f} -> {losses[-1]:.4f}"


@pytest.mark.parametrize("name", model_names())
def test_same_seed_same_output(name):
    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        model = build_model(name, _spec()).eval()
        with torch.no_grad():
            return model(_inputs())

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


@pytest.mark.parametrize("name", model_names())
def test_unknown_config_key_raises(name):
    with pytest.raises(ModelError, match="unknown option 'no_such_option'.*accepted: "):
        build_model(name, _spec(), {"no_such_option": 1})


@pytest.mark.parametrize("name", model_names())
def test_adjacency_required_by_graph_models_only(name):
    spec = DataSpec(num_nodes=N, input_len=L, output_len=L, adjacency=None)
    if name in GRAPH_MODELS:
        with pytest.raises(ValueError, match="adjacency"):
            build_model(name, spec)
    else:
        assert build_model(name, spec)(_inputs()).shape == (B, L, N, 1)


@pytest.mark.parametrize("name", sorted(GRAPH_MODELS))
def test_wrong_adjacency_shape_raises(name):
    spec = DataSpec(num_nodes=N, input_len=L, output_len=L, adjacency=_adjacency(N + 1))
    with pytest.raises(ValueError, match="adjacency has shape"):
        build_model(name, spec)


@pytest.mark.parametrize("name", sorted(GRAPH_MODELS))
def test_graph_matrices_follow_module_conversion(name):
    # The fixed matrices are buffers: .to() converts them with the weights, so a float64
    # model runs on float64 input; plain tensor attributes would stay float32 and fail.
    model = build_model(name, _spec()).to(torch.float64).eval()
    floats = [b for b in model.buffers() if b.is_floating_point()]
    assert floats and all(b.dtype == torch.float64 for b in floats)
    assert model(_inputs().double()).dtype == torch.float64


@pytest.mark.parametrize("name", sorted(GRAPH_MODELS))
def test_graph_changes_the_forecast(name):
    # The same weights on another graph must give another forecast: the graph is used.
    torch.manual_seed(0)
    a = build_model(name, _spec()).eval()
    other = DataSpec(num_nodes=N, input_len=L, output_len=L, adjacency=_adjacency(N, seed=5))
    b = build_model(name, other).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert not torch.allclose(a(_inputs()), b(_inputs()))


def test_stid_parameter_count_matches_reference():
    # BasicTS STID on METR-LA (207 sensors) at its defaults reports 117,100 parameters.
    assert count_parameters(build_model("stid", DataSpec(num_nodes=207))) == 117_100


def _gwnet_reference_count(n: int, in_dim: int = 2, out_len: int = 12, r: int = 32,
                           d: int = 32, s: int = 256, e: int = 512, k: int = 2,
                           layers: int = 8, supports: int = 3, order: int = 2,
                           emb: int = 10) -> int:
    """Parameters of nnzhan/Graph-WaveNet ``gwnet`` (gcn_bool, addaptadj, randomadj).

    Written from its ``__init__``: conv weights plus biases, BatchNorm gain and bias, two
    node-embedding tables. Instantiating that class for 207 nodes prints 309,400.
    """
    start = in_dim * r + r
    filter_and_gate = 2 * (r * d * k + d)
    residual = d * r + r                       # built in the reference but unused with gcn
    skip = d * s + s
    gcn = (order * supports + 1) * d * r + r   # 1x1 conv over [x, A x, A^2 x, ...]
    bn = 2 * r
    end = (s * e + e) + (e * out_len + out_len)
    nodevec = 2 * n * emb
    return start + layers * (filter_and_gate + residual + skip + gcn + bn) + end + nodevec


def test_gwnet_parameter_count_matches_reference_architecture():
    assert _gwnet_reference_count(207) == 309_400
    # Parameters the reference builds that never receive a gradient, which this
    # implementation omits: the residual 1x1 convs (used only without graph convolution)
    # and the last layer's graph convolution and BatchNorm (their output is never read).
    unused_residual = 8 * (32 * 32 + 32)
    unused_last_gcn_bn = (2 * 3 + 1) * 32 * 32 + 32 + 2 * 32
    spec = DataSpec(num_nodes=207, adjacency=_adjacency(207))
    expected = 309_400 - unused_residual - unused_last_gcn_bn
    assert expected == 293_688
    assert count_parameters(build_model("gwnet", spec)) == expected


def _gwnet_for(input_len: int, state: dict | None = None):
    spec = DataSpec(num_nodes=N, input_len=input_len, output_len=L, adjacency=_adjacency(N))
    model = build_model("gwnet", spec).eval()
    if state is not None:
        model.load_state_dict(state)
    return model


def test_gwnet_reads_exactly_its_receptive_field():
    torch.manual_seed(0)
    m12 = _gwnet_for(12)
    assert m12.receptive_field == 13
    m13, m16 = _gwnet_for(13, m12.state_dict()), _gwnet_for(16, m12.state_dict())
    x16 = torch.cat([_inputs(seed=1)[:, :4], _inputs()], dim=1)  # [B, 16, N, 3]
    with torch.no_grad():
        # a longer input: the forecast depends on the newest 13 steps only
        torch.testing.assert_close(m16(x16), m13(x16[:, -13:]))
        # a shorter one is left-padded with zeros (a zero time-of-day and day-of-week too)
        padded = torch.cat([torch.zeros(B, 1, N, 3), x16[:, -12:]], dim=1)
        torch.testing.assert_close(m12(x16[:, -12:]), m13(padded))
        # and the oldest of those 13 steps does matter
        changed = x16.clone()
        changed[:, -13, :, 0] += 1.0
        assert not torch.allclose(m16(x16), m16(changed))


def test_gwnet_rejects_bad_in_dim():
    with pytest.raises(ValueError, match="in_dim"):
        build_model("gwnet", _spec(), {"in_dim": 4})


def test_stgcn_rejects_too_short_input():
    spec = DataSpec(num_nodes=N, input_len=8, output_len=L, adjacency=_adjacency(N))
    with pytest.raises(ValueError, match="too short"):
        build_model("stgcn", spec)


@pytest.mark.parametrize("use_tod", [False, True])
def test_stgcn_reads_time_of_day_only_when_asked(use_tod):
    torch.manual_seed(0)
    model = build_model("stgcn", _spec(), {"use_time_of_day": use_tod}).eval()
    x = _inputs()
    shifted = x.clone()
    shifted[..., 1] = (shifted[..., 1] + 0.25) % 1.0
    with torch.no_grad():
        same = torch.equal(model(x), model(shifted))
    assert same is not use_tod


def test_chebyshev_basis_recursion():
    rng = np.random.default_rng(0)
    lap = rng.standard_normal((5, 5))
    lap = (lap + lap.T) / 4
    t = chebyshev_basis(lap, 4)
    np.testing.assert_allclose(t[0], np.eye(5), atol=1e-6)
    np.testing.assert_allclose(t[1], lap, atol=1e-6)
    np.testing.assert_allclose(t[2], 2 * lap @ lap - np.eye(5), atol=1e-5)
    np.testing.assert_allclose(t[3], 4 * lap @ lap @ lap - 3 * lap, atol=1e-5)

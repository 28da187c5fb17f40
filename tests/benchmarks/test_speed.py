"""pytest-benchmark cases for the hot paths. Off by default (``--benchmark-disable`` in the
project's pytest options makes each case run once as a plain test); measure with
``python -m pytest tests/benchmarks --benchmark-enable``.

Each case that has a slower reference also times it, so that the stored numbers can be read
as ratios from the same run on the same machine.
"""

import numpy as np
import pytest
import torch

from bench.perf.naive import materialise
from stforecast.datasets import load_dataset
from stforecast.engine import Trainer, seed_everything
from stforecast.metrics import masked_mae
from stforecast.models import DataSpec, build_model, model_names
from stforecast.windows import WindowedData


@pytest.fixture(scope="module")
def data() -> WindowedData:
    ds = load_dataset("synthetic-la", options={"nodes": 48, "days": 14, "seed": 0})
    return WindowedData(ds)


@pytest.fixture(scope="module")
def batch_starts(data):
    g = torch.Generator().manual_seed(0)
    return data.starts["train"][torch.randperm(data.num_windows("train"), generator=g)[:64]]


def test_batch_by_index(benchmark, data, batch_starts):
    x, y = benchmark(data.batch, batch_starts)
    assert x.shape == (64, 12, 48, 3) and y.shape == (64, 12, 48, 1)


def test_batch_from_materialised_windows(benchmark, data, batch_starts):
    """The naive reference's way: stack 64 windows picked from materialised arrays."""
    xs, ys = materialise(data, "train")
    tx, ty = torch.from_numpy(xs), torch.from_numpy(ys)
    idx = (batch_starts - data.starts["train"][0]).tolist()

    def collate():
        return torch.stack([tx[i] for i in idx]), torch.stack([ty[i] for i in idx])

    x, y = benchmark(collate)
    ref_x, ref_y = data.batch(batch_starts)
    assert torch.equal(x, ref_x) and torch.equal(y, ref_y)


def _model(name, data):
    seed_everything(0)
    spec = DataSpec(num_nodes=data.num_nodes, adjacency=data.dataset.adjacency)
    return build_model(name, spec)


@pytest.mark.parametrize("name", model_names())
def test_train_step(benchmark, name, data, batch_starts):
    model = _model(name, data)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data.batch(batch_starts)

    def step():
        loss = masked_mae(data.scaler.inverse(model(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    assert np.isfinite(benchmark(step))


@pytest.mark.parametrize("grad", [False, True], ids=["inference_mode", "autograd_on"])
@pytest.mark.parametrize("name", model_names())
def test_eval_pass(benchmark, name, grad, data):
    model = _model(name, data).eval()
    x, _ = data.batch(data.starts["val"][:256])

    def forward():
        if grad:
            return model(x).sum().item()
        with torch.inference_mode():
            return model(x).sum().item()

    assert np.isfinite(benchmark(forward))


def test_one_epoch(benchmark, data):
    model = _model("stid", data)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.ConstantLR(opt, 1.0, 0)
    tr = Trainer(model, opt, sched, data, step_unit="epoch", needs_metric=False, seed=0)
    record = benchmark.pedantic(tr.run_epoch, rounds=3, iterations=1)
    assert np.isfinite(record.val["mae"])

"""The CUDA path: resident data, bf16 autocast, compile, fused members. Runs only on a GPU."""

import pytest
import torch

from schedules import BUILTIN
from stforecast.datasets import load_dataset
from stforecast.engine import TrainConfig, Trainer, seed_everything
from stforecast.fused import FusedTrainer
from stforecast.models import DataSpec, build_model
from stforecast.windows import WindowedData

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


_DATA: dict[str, WindowedData] = {}


def trainer(device, model="stid", config=None, schedule="warmup_cosine", seed=0):
    if device not in _DATA:  # one dataset per device, shared as fused members require
        _DATA[device] = WindowedData(
            load_dataset("synthetic-la", options={"nodes": 32, "days": 4}), device=device)
    data = _DATA[device]
    item = BUILTIN.get(schedule)
    seed_everything(seed)
    spec = DataSpec(num_nodes=data.num_nodes, adjacency=data.dataset.adjacency)
    m = build_model(model, spec, {"dropout": 0.0} if model != "gwnet" else {}).to(device)
    opt = item.spec.make_optimizer(m.parameters())
    sched = item.spec.build(opt, 10, -(-data.num_windows("train") // 64))
    return Trainer(m, opt, sched, data, step_unit=item.spec.step_unit,
                   needs_metric=item.spec.needs_metric, seed=seed, config=config)


@pytest.mark.parametrize("model", ["stid", "gwnet", "stgcn"])
def test_cuda_training_matches_cpu_closely(model):
    cpu = trainer("cpu", model).fit(2)
    gpu = trainer("cuda", model).fit(2)
    assert gpu[-1].lr == cpu[-1].lr  # the same schedule path, step for step
    assert gpu[-1].val["mae"] == pytest.approx(cpu[-1].val["mae"], rel=0.02)


def test_data_stays_on_the_device():
    tr = trainer("cuda")
    assert tr.data.inputs.is_cuda and tr.data.starts["train"].is_cuda


def test_bf16_and_compile_run():
    tr = trainer("cuda", config=TrainConfig(autocast="bf16", compile=True))
    records = tr.fit(2)
    assert all(r.val["mae"] < 20 for r in records)


def test_fused_members_on_cuda_match_standalone():
    alone = trainer("cuda", schedule="plateau", seed=1).fit(2)
    fused = FusedTrainer([trainer("cuda", schedule="plateau", seed=1),
                          trainer("cuda", schedule="onecycle", seed=2)])
    fused.run_epoch()
    fused.run_epoch()
    for got, want in zip(fused.members[0].records, alone):
        assert got.val["mae"] == pytest.approx(want.val["mae"], rel=1e-3)

"""Fused (vmap-stacked) training: every member's records match its standalone run on CPU
(the stacked optimizer step itself is tested in ``test_stacked.py``)."""

import pytest
import torch

from schedules import BUILTIN
from stforecast.datasets import load_dataset
from stforecast.engine import Diverged, EpochRecord, TrainConfig, Trainer, seed_everything
from stforecast.fused import FusedTrainer
from stforecast.models import DataSpec, build_model
from stforecast.windows import WindowedData

OPTIONS = {"embed_dim": 8, "node_dim": 8, "tod_dim": 8, "dow_dim": 8, "num_layers": 2,
           "dropout": 0.0}


@pytest.fixture(scope="module")
def data():
    return WindowedData(load_dataset("synthetic-la", options={"nodes": 8, "days": 3}))


def member(data, schedule, seed, model="stid", options=OPTIONS, epochs=8, autocast=None):
    item = BUILTIN.get(schedule)
    seed_everything(seed)
    spec = DataSpec(num_nodes=data.num_nodes, adjacency=data.dataset.adjacency)
    m = build_model(model, spec, options)
    opt = item.spec.make_optimizer(m.parameters())
    steps = -(-data.num_windows("train") // 32)
    return Trainer(m, opt, item.spec.build(opt, epochs, steps), data,
                   step_unit=item.spec.step_unit, needs_metric=item.spec.needs_metric,
                   seed=seed, config=TrainConfig(batch_size=32, autocast=autocast))


CASES = [("plateau", 0), ("warmup_cosine", 1), ("onecycle", 2), ("schedulefree", 0)]


def test_each_member_matches_its_standalone_run(data):
    epochs = 4
    alone = [member(data, s, seed).fit(epochs) for s, seed in CASES]
    fused = FusedTrainer([member(data, s, seed) for s, seed in CASES])
    assert fused.stepped_alone() == [fused.members[3]]  # Adam stacked, schedule-free alone
    for _ in range(epochs):
        results = fused.run_epoch()
        assert all(isinstance(r, EpochRecord) for _, r in results)
    for k, t in enumerate(fused.members):
        for got, want in zip(t.records, alone[k]):
            assert got.lr == want.lr and got.lr_end == want.lr_end  # exact: same schedule steps
            assert got.train_loss == pytest.approx(want.train_loss, rel=1e-4)
            for key in ("mae", "mae_h3", "mae_h12", "rmse"):
                assert got.val[key] == pytest.approx(want.val[key], rel=1e-4)
                assert got.test[key] == pytest.approx(want.test[key], rel=1e-4)


def test_fused_members_train_under_the_autocast_setting(data):
    """A fused bf16 run computes in bfloat16 as its standalone run does, not in float32."""
    alone = member(data, "constant", 0, autocast="bf16").fit(1)[0]
    plain = FusedTrainer([member(data, "constant", s) for s in (0, 1)]).run_epoch()[0][1]
    bf16 = FusedTrainer([member(data, "constant", s, autocast="bf16")
                         for s in (0, 1)]).run_epoch()[0][1]
    assert bf16.train_loss != plain.train_loss
    assert bf16.train_loss == pytest.approx(alone.train_loss, rel=2e-2)
    assert abs(bf16.train_loss - alone.train_loss) < abs(plain.train_loss - alone.train_loss)


def test_stgcn_members_match_too(data):
    opts = {"dropout": 0.0}
    alone = member(data, "multistep", 3, "stgcn", opts).fit(2)
    fused = FusedTrainer([member(data, "multistep", 3, "stgcn", opts),
                          member(data, "constant", 4, "stgcn", opts)])
    fused.run_epoch()
    fused.run_epoch()
    for got, want in zip(fused.members[0].records, alone):
        assert got.test["mae"] == pytest.approx(want.test["mae"], rel=1e-4)


def test_a_diverging_member_leaves_the_group(data):
    good = member(data, "constant", 0)
    bad = member(data, "constant", 1)
    for group in bad.optimizer.param_groups:
        group["lr"] = 1e6
    bad.config = good.config = TrainConfig(batch_size=32, grad_clip=None)
    bad.loss_bound = good.loss_bound = 50.0
    fused = FusedTrainer([good, bad])
    outcomes = []
    for _ in range(3):
        outcomes += fused.run_epoch()
        if len(fused.members) == 1:
            break
    assert any(t is bad and isinstance(r, Diverged) for t, r in outcomes)
    assert fused.members == [good]


GWNET = {"residual_channels": 4, "dilation_channels": 4, "skip_channels": 8, "end_channels": 8,
         "blocks": 2, "layers": 2, "node_emb_dim": 3, "dropout": 0.0}


def test_gwnet_members_match_including_batch_norm_statistics(data):
    """Each member's running mean, variance and batch count evolve as in its standalone
    run (train mode: batch statistics, running ones updated; eval mode: running ones)."""
    cases = [("constant", 0), ("onecycle", 1), ("schedulefree", 2)]
    alone = [member(data, s, seed, "gwnet", GWNET) for s, seed in cases]
    for t in alone:
        t.fit(2)
    fused = FusedTrainer([member(data, s, seed, "gwnet", GWNET) for s, seed in cases])
    fused.run_epoch()
    fused.run_epoch()
    assert len(fused.members) == 3
    steps = 2 * -(-data.num_windows("train") // 32)  # one batch-norm update per step
    means = []
    for t, want in zip(fused.members, alone):
        assert len(t.records) == len(want.records) == 2
        for got, exp in zip(t.records, want.records):
            assert got.train_loss == pytest.approx(exp.train_loss, rel=1e-4)
            assert got.val["mae"] == pytest.approx(exp.val["mae"], rel=1e-4)
            assert got.test["mae"] == pytest.approx(exp.test["mae"], rel=1e-4)
        mine, theirs = dict(t.model.named_buffers()), dict(want.model.named_buffers())
        bn = [n for n in theirs if n.endswith("running_mean")]
        assert len(bn) == 3
        for n in theirs:
            if n.endswith("num_batches_tracked"):
                assert mine[n].item() == theirs[n].item() == steps
                continue
            err = ((mine[n] - theirs[n]).abs().max() / theirs[n].abs().max()).item()
            # A running mean sits after a bias that batch norm leaves without a true
            # gradient: its gradient is rounding noise, which Adam-type steps turn into
            # lr-sized moves, so means agree to ~1e-3 (schedule-free) rather than 1e-5.
            assert err < (2e-3 if n.endswith("running_mean") else 1e-5), n
        means.append(mine[bn[0]])
    assert not torch.allclose(means[0], means[1])  # per member, not one shared statistic


def test_members_must_agree(data):
    with pytest.raises(ValueError, match="architecture"):
        FusedTrainer([member(data, "constant", 0), member(data, "constant", 0, "stgcn", {})])


def test_units_group_jobs_of_equal_length():
    from bench.plan import plan_jobs, units

    jobs = plan_jobs(BUILTIN.select("seed"), (6, 8), (0, 1))
    groups = units(jobs, 3)
    assert sorted(j.key for g in groups for j in g) == sorted(j.key for j in jobs)
    assert all(len({j.epochs for j in g}) == 1 and len(g) <= 3 for g in groups)
    assert units(jobs, 1) == [[j] for j in jobs]


def test_fuse_option_end_to_end_matches_unfused(tmp_path):
    import csv
    import json

    from bench.cli import main

    profile = tmp_path / "tiny.yaml"
    profile.write_text(
        "dataset: {name: synthetic-la, options: {nodes: 8, days: 3}}\n"
        "model: {name: stid, options: {embed_dim: 8, node_dim: 8, tod_dim: 8, dow_dim: 8,"
        " num_layers: 2, dropout: 0.0}}\n"
        "schedules: seed\nbudgets: [6, 8]\nseeds: [0, 1]\ndevice: cpu\nthreads: 1\n")
    assert main(["run", "--profile", str(profile), "--results", str(tmp_path / "a")]) == 0
    assert main(["run", "--profile", str(profile), "--results", str(tmp_path / "b"),
                 "--fuse", "4"]) == 0
    status = json.loads((tmp_path / "b/tiny/runs/plateau/seed0/status.json").read_text())
    assert status["fused"] == 4  # it really trained fused, not one by one
    rows = []
    for d in "ab":
        with open(tmp_path / d / "tiny/epochs.csv") as fh:
            rows.append(list(csv.DictReader(fh)))
    assert len(rows[0]) == len(rows[1]) > 0
    for a, b in zip(*rows):
        assert (a["schedule"], a["budget"], a["seed"], a["epoch"]) == \
            (b["schedule"], b["budget"], b["seed"], b["epoch"])
        assert float(a["lr"]) == float(b["lr"])
        assert float(b["test_mae"]) == pytest.approx(float(a["test_mae"]), rel=1e-4)


def test_gwnet_units_train_fused_end_to_end(tmp_path):
    """Graph WaveNet, with batch-norm statistics, is stacked by the job runner too."""
    import csv
    import json

    from bench.cli import main

    profile = tmp_path / "gw.yaml"
    options = ", ".join(f"{k}: {v}" for k, v in GWNET.items())
    profile.write_text(
        "dataset: {name: synthetic-la, options: {nodes: 8, days: 3}}\n"
        f"model: {{name: gwnet, options: {{{options}}}}}\n"
        "schedules: constant\nbudgets: [2]\nseeds: [0, 1]\ndevice: cpu\nthreads: 1\n")
    assert main(["run", "--profile", str(profile), "--results", str(tmp_path / "a")]) == 0
    assert main(["run", "--profile", str(profile), "--results", str(tmp_path / "b"),
                 "--fuse", "2"]) == 0
    status = json.loads((tmp_path / "b/gw/runs/constant/seed1/status.json").read_text())
    assert status["fused"] == 2
    rows = []
    for d in "ab":
        with open(tmp_path / d / "gw/epochs.csv") as fh:
            rows.append(list(csv.DictReader(fh)))
    assert len(rows[0]) == len(rows[1]) == 4
    for a, b in zip(*rows):
        assert float(b["test_mae"]) == pytest.approx(float(a["test_mae"]), rel=1e-3)

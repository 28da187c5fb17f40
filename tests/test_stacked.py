"""The stacked optimizer step: torch's Adam, AdamW and SGD on ``[K, D]`` tensors, and fused
members stepped by it matching their standalone runs, resumable alone from a checkpoint."""

import copy
import io

import pytest
import torch
from torch import nn

from schedules import BUILTIN
from schedules.kinds import Constant, OneCycle, WarmupCosine
from stforecast.datasets import load_dataset
from stforecast.engine import EpochRecord, TrainConfig, Trainer, seed_everything
from stforecast.fused import FusedTrainer
from stforecast.models import DataSpec, build_model
from stforecast.stacked import StackedOptimizer, StackLayout, clip_rows_, stacked_kind
from stforecast.windows import WindowedData

MAX_NORM = 1.0


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3), nn.Linear(3, 2))


# Each case: K optimizer factories (members differ in lr, weight decay, betas, momentum).
CASES = {
    "adam": [lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
             lambda p: torch.optim.Adam(p, lr=3e-3, betas=(0.8, 0.99)),
             lambda p: torch.optim.Adam(p, lr=2e-2, weight_decay=5e-4, eps=1e-6)],
    "adamw": [lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=5e-2),
              lambda p: torch.optim.AdamW(p, lr=4e-3, weight_decay=0.0, betas=(0.85, 0.95)),
              lambda p: torch.optim.AdamW(p, lr=2e-2, weight_decay=1e-1)],
    "sgd": [lambda p: torch.optim.SGD(p, lr=5e-2, momentum=0.9),
            lambda p: torch.optim.SGD(p, lr=2e-2, momentum=0.8, nesterov=True,
                                      weight_decay=1e-2),
            lambda p: torch.optim.SGD(p, lr=1e-1, weight_decay=5e-3),
            lambda p: torch.optim.SGD(p, lr=3e-2, momentum=0.5, dampening=0.1)],
    "sgd_nesterov": [lambda p: torch.optim.SGD(p, lr=2e-2, momentum=0.9, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.7, nesterov=True,
                                               weight_decay=1e-3)],
    # kinds interleaved: each kind's rows are not consecutive (gathered and scattered)
    "mixed": [lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
              lambda p: torch.optim.SGD(p, lr=5e-2, momentum=0.9, nesterov=True),
              lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=5e-2),
              lambda p: torch.optim.SGD(p, lr=5e-2, weight_decay=1e-3)],
}


def _schedulers(optimizers):
    """Genuine schedulers that change every member's lr each step; OneCycle also cycles
    Adam's beta1 and SGD's momentum, which the stacked step must read each step too."""
    out = []
    for k, opt in enumerate(optimizers):
        if k % 2 == 0:
            out.append(torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=opt.param_groups[0]["lr"], total_steps=200,
                cycle_momentum="momentum" not in opt.defaults
                or opt.defaults["momentum"] > 0))
        else:
            out.append(torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.99))
    return out


def _twins(case, seed=0):
    """K models, and an identical copy of each, each with its own optimizer and scheduler."""
    torch.manual_seed(seed)
    models = [_net() for _ in CASES[case]]
    twins = [copy.deepcopy(m) for m in models]
    opts = [f(m.parameters()) for f, m in zip(CASES[case], models)]
    ref_opts = [f(m.parameters()) for f, m in zip(CASES[case], twins)]
    return models, opts, _schedulers(opts), twins, ref_opts, _schedulers(ref_opts)


def _state_equal(got: torch.optim.Optimizer, want: torch.optim.Optimizer, atol: float):
    a, b = got.state_dict()["state"], want.state_dict()["state"]
    assert a.keys() == b.keys()
    for i in b:
        assert a[i].keys() == b[i].keys()
        for key in b[i]:
            x, y = a[i][key], b[i][key]
            assert (x.dtype, x.device, x.shape) == (y.dtype, y.device, y.shape), key
            if key == "step":
                assert x.item() == y.item()
            else:
                torch.testing.assert_close(x, y, rtol=0, atol=atol)


@pytest.mark.parametrize("case", sorted(CASES))
def test_stacked_step_matches_torch_over_100_steps(case):
    """Torch's own step on one side, the stacked one on the other: 10 steps by torch on both
    (so the stacked optimizer starts from existing state), then 90 stacked; gradients large
    enough that clipping bites on some steps and not on others; from step 50 one parameter
    without a gradient every third step, which torch skips (its step count included), so
    Adam's per-parameter step counts part and the update goes parameter by parameter."""
    models, opts, scheds, twins, ref_opts, ref_scheds = _twins(case)
    gen = torch.Generator().manual_seed(1)
    clipped, unclipped = 0, 0
    stacked = layout = flat = None
    for step in range(100):
        missing = step >= 50 and step % 3 == 2  # the last layer's bias gets none
        grads = [[torch.randn(p.shape, generator=gen) * (0.1 + 0.3 * (step % 5))
                  for p in m.parameters()] for m in twins]
        for k, (m, opt) in enumerate(zip(twins, ref_opts)):
            for i, (p, g) in enumerate(zip(m.parameters(), grads[k])):
                p.grad = None if missing and i == 5 else g.clone()
            norm = nn.utils.clip_grad_norm_(m.parameters(), MAX_NORM)
            clipped += int(norm > MAX_NORM)
            unclipped += int(norm <= MAX_NORM)
            opt.step()
        if step < 10:  # the members' own optimizers, as before a fused run
            for k, (m, opt) in enumerate(zip(models, opts)):
                for i, (p, g) in enumerate(zip(m.parameters(), grads[k])):
                    p.grad = None if missing and i == 5 else g.clone()
                nn.utils.clip_grad_norm_(m.parameters(), MAX_NORM)
                opt.step()
        else:
            if stacked is None:
                layout = StackLayout.of(models[0])
                params = [list(m.parameters()) for m in models]
                flat = layout.stack(params)
                stacked = StackedOptimizer(opts, params, layout, flat, MAX_NORM)
                assert stacked.fallback == [] and stacked.rows == list(range(len(models)))
            active = [not (missing and i == 5) for i in range(len(layout.names))]
            g = layout.flatten_stacked([torch.stack([gs[i] for gs in grads]) if on else None
                                        for i, on in enumerate(active)], flat)
            stacked.step(flat, g, active)
        for s in scheds + ref_scheds:
            s.step()
    assert clipped > 50 and unclipped > 20  # both sides of the clip coefficient exercised
    stacked.write_back()
    for k, want in enumerate(twins):
        torch.testing.assert_close(flat[k], layout.flatten(list(want.parameters())),
                                   rtol=0, atol=1e-6)
        _state_equal(opts[k], ref_opts[k], atol=1e-6)
    # the skipped bias really lags: torch counts its own steps per parameter
    if not case.startswith("sgd"):
        st = ref_opts[0].state_dict()["state"]
        assert st[5]["step"].item() < st[0]["step"].item() == 100


def test_clip_rows_is_clip_grad_norm_per_member():
    torch.manual_seed(0)
    grads = [[torch.randn(4, 3) * s, torch.randn(3) * s] for s in (0.01, 1.0, 10.0)]
    layout = StackLayout(["w", "b"], [torch.Size([4, 3]), torch.Size([3])])
    flat = torch.stack([layout.flatten(g) for g in grads])
    norms = clip_rows_(flat, MAX_NORM)
    for k, gs in enumerate(grads):
        ps = [nn.Parameter(torch.zeros_like(g)) for g in gs]
        for p, g in zip(ps, gs):
            p.grad = g.clone()
        norm = nn.utils.clip_grad_norm_(ps, MAX_NORM)
        assert norms[k, 0].item() == pytest.approx(norm.item(), rel=1e-6)
        torch.testing.assert_close(flat[k], layout.flatten([p.grad for p in ps]),
                                   rtol=1e-6, atol=0)
    assert norms[0, 0] < MAX_NORM < norms[1, 0]  # one row left alone, the others scaled


def test_only_covered_optimizers_are_stacked():
    import schedulefree

    m = _net()
    params = list(m.parameters())
    assert stacked_kind(torch.optim.Adam(params), params) == "adam"
    assert stacked_kind(torch.optim.AdamW(params), params) == "adam"
    assert stacked_kind(torch.optim.SGD(params, lr=0.1, momentum=0.9), params) == "sgd"
    assert stacked_kind(schedulefree.AdamWScheduleFree(params), params) is None
    assert stacked_kind(torch.optim.Adam(params, amsgrad=True), params) is None
    assert stacked_kind(torch.optim.Adam(params, maximize=True), params) is None
    assert stacked_kind(torch.optim.RMSprop(params), params) is None
    two_groups = torch.optim.Adam([{"params": params[:2]}, {"params": params[2:], "lr": 1}])
    assert stacked_kind(two_groups, params) is None
    assert stacked_kind(torch.optim.Adam(params[:2]), params) is None  # some never stepped
    opts = [torch.optim.Adam(params), schedulefree.AdamWScheduleFree(params),
            torch.optim.SGD(params, lr=0.1)]
    layout = StackLayout.of(m)
    stacked = StackedOptimizer(opts, [params] * 3, layout, layout.stack([params] * 3), None)
    assert stacked.fallback == [1] and stacked.rows == [0, 2]


# -- fused members --------------------------------------------------------------------------
OPTIONS = {"embed_dim": 8, "node_dim": 8, "tod_dim": 8, "dow_dim": 8, "num_layers": 2,
           "dropout": 0.0}


@pytest.fixture(scope="module")
def data():
    return WindowedData(load_dataset("synthetic-la", options={"nodes": 8, "days": 3}))


def member(data, spec, seed, epochs=4, grad_clip=5.0):
    """A trainer for a schedule given by name or as a spec."""
    spec = BUILTIN.get(spec).spec if isinstance(spec, str) else spec
    seed_everything(seed)
    m = build_model("stid", DataSpec(num_nodes=data.num_nodes,
                                     adjacency=data.dataset.adjacency), OPTIONS)
    opt = spec.make_optimizer(m.parameters())
    steps = -(-data.num_windows("train") // 32)
    return Trainer(m, opt, spec.build(opt, epochs, steps), data, step_unit=spec.step_unit,
                   needs_metric=spec.needs_metric, seed=seed,
                   config=TrainConfig(batch_size=32, grad_clip=grad_clip))


SPECS = [
    ("adamw_cosine", WarmupCosine(lr=2e-3, weight_decay=1e-2, optimizer="adamw",
                                  warmup_epochs=1), 0),
    ("sgd_nesterov", Constant(lr=2e-2, optimizer="sgd", momentum=0.9, nesterov=True,
                              weight_decay=5e-4), 1),
    ("schedulefree", "schedulefree", 2),                    # steps on its own, mid-group
    ("sgd_onecycle", OneCycle(lr=5e-2, optimizer="sgd"), 3),  # momentum cycled per step
    ("plateau", "plateau", 4),
]


def _close_records(got, want, rel=1e-4):
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert a.lr == b.lr and a.lr_end == b.lr_end
        assert a.train_loss == pytest.approx(b.train_loss, rel=rel)
        for key in ("mae", "mae_h3", "rmse"):
            assert a.val[key] == pytest.approx(b.val[key], rel=rel)
            assert a.test[key] == pytest.approx(b.test[key], rel=rel)


def test_stacked_members_match_their_standalone_runs(data):
    """AdamW, SGD (Nesterov, OneCycle-cycled momentum) and Adam members stepped together,
    a schedule-free member among them on its own path; grad_clip low enough to bite."""
    epochs = 3
    alone = [member(data, spec, seed, grad_clip=1.0).fit(epochs) for _, spec, seed in SPECS]
    fused = FusedTrainer([member(data, spec, seed, grad_clip=1.0) for _, spec, seed in SPECS])
    assert fused.stepped_alone() == [fused.members[2]]  # only schedule-free
    for _ in range(epochs):
        assert all(isinstance(r, EpochRecord) for _, r in fused.run_epoch())
    for k, t in enumerate(fused.members):
        _close_records(t.records, alone[k])


def test_stacked_and_per_member_paths_agree(data):
    specs = [s for s in SPECS if s[0] != "schedulefree"]
    paths = []
    for stacked in (True, False):
        fused = FusedTrainer([member(data, spec, seed) for _, spec, seed in specs],
                             stacked_optimizer=stacked)
        assert len(fused.stepped_alone()) == (0 if stacked else len(specs))
        fused.run_epoch()
        fused.run_epoch()
        paths.append(fused.members)
    for a, b in zip(*paths):
        _close_records(a.records, b.records, rel=1e-5)
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["adamw_cosine", "sgd_nesterov", "plateau"])
def test_a_member_saved_after_fused_epochs_resumes_alone(data, name):
    """Checkpointed after two fused epochs (as ``bench.job`` does), a member resumes on its
    own and ends where a run never fused ends. Its optimizer state has torch's structure and
    step counts, the values torch's own optimizer reaches from the same gradients (the
    per-member path), and its checkpoint holds only its own tensors, not the stack."""
    _, spec, seed = next(s for s in SPECS if s[0] == name)
    straight = member(data, spec, seed)
    straight.fit(2)
    fused, own = (FusedTrainer([member(data, spec, seed), member(data, "constant", 9)],
                               stacked_optimizer=stacked) for stacked in (True, False))
    for f in (fused, own):
        f.run_epoch()
        f.run_epoch()
    saved = fused.members[0]
    got = saved.optimizer.state_dict()["state"]
    _same_structure(got, straight.optimizer.state_dict()["state"])
    want = own.members[0].optimizer.state_dict()["state"]
    for i in want:
        for key in want[i]:
            torch.testing.assert_close(got[i][key], want[i][key], rtol=1e-4, atol=1e-7)
    buf, alone_buf = io.BytesIO(), io.BytesIO()
    torch.save(saved.state_dict(), buf)
    torch.save(straight.state_dict(), alone_buf)
    assert len(buf.getvalue()) < 1.05 * len(alone_buf.getvalue())
    resumed = member(data, spec, seed)
    resumed.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    resumed.fit(4)
    straight.fit(4)
    _close_records(resumed.records, straight.records)


def _same_structure(got: dict, want: dict):
    """The same parameters, keys, dtypes, devices, shapes and step counts as torch holds."""
    assert got.keys() == want.keys() and len(want) > 0
    for i in want:
        assert got[i].keys() == want[i].keys()
        for key in want[i]:
            x, y = got[i][key], want[i][key]
            assert (x.dtype, x.device, x.shape) == (y.dtype, y.device, y.shape)
            if key == "step":
                assert x.item() == y.item()

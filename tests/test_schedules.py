"""Every registered schedule against its definition, at every step, and across a resume."""

import math

import pytest
import torch

from schedules import BUILTIN, KINDS, NamedSchedule, Registry, ScheduleError
from schedules.kinds import (
    Constant,
    MultiStep,
    OneCycle,
    Plateau,
    ScheduleFree,
    WarmupCosine,
    WarmupStableDecay,
)

STEPS = 7  # optimizer steps per epoch in these tests


def plateau_metric(epoch: int) -> float:
    """Improves for 3 epochs, then flat: drops follow patience exactly."""
    return 10.0 - min(epoch, 3)


def simulate(spec, epochs, steps=STEPS, start_state=None, stop_at=None):
    """lr used by every optimizer step, stepping the scheduler as the engine does."""
    p = torch.nn.Parameter(torch.zeros(2))
    opt = spec.make_optimizer([p])
    sched = spec.build(opt, epochs, steps)
    begin = 0
    if start_state is not None:
        opt.load_state_dict(start_state["opt"])
        sched.load_state_dict(start_state["sched"])
        begin = start_state["epoch"]
    lrs = []
    for epoch in range(begin, epochs):
        if stop_at is not None and epoch == stop_at:
            return lrs, {"opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch}
        if hasattr(opt, "train"):
            opt.train()
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            p.grad = torch.ones_like(p)
            opt.step()
            if spec.step_unit == "step":
                sched.step()
        if spec.step_unit == "epoch":
            if spec.needs_metric:
                sched.step(plateau_metric(epoch))
            else:
                sched.step()
    return lrs, None


def reference(spec, epochs, steps=STEPS):
    """Each kind's lr path written from its definition, independent of torch's classes."""
    total = epochs * steps
    lr = spec.lr
    out = []
    if spec.kind == "constant":
        return [lr] * total
    if spec.kind == "plateau":
        cur, best, bad = lr, math.inf, 0
        for e in range(epochs):
            out += [cur] * steps
            m = plateau_metric(e)
            if m < best * (1 - spec.threshold):
                best, bad = m, 0
            else:
                bad += 1
            if bad > spec.patience:
                cur, bad = max(cur * spec.factor, spec.min_lr), 0
        return out
    if spec.kind in ("multistep", "multistep_scaled"):
        ms = (spec.milestones if spec.kind == "multistep" else
              [max(1, round(f * epochs)) for f in spec.milestone_fractions])
        for e in range(epochs):
            out += [lr * spec.gamma ** sum(m <= e for m in ms)] * steps
        return out
    if spec.kind == "warmup_cosine":
        w = spec.warmup_epochs * steps
        span = total - 1 - w
        for k in range(total):
            if k < w:
                out.append(lr * (spec.warmup_start_factor + (1 - spec.warmup_start_factor) * k / w))
            else:
                cos = (1 + math.cos(math.pi * (k - w) / span)) / 2
                out.append(spec.min_lr + (lr - spec.min_lr) * cos)
        return out
    if spec.kind == "onecycle":
        start, end = lr / spec.div_factor, lr / spec.div_factor / spec.final_div_factor
        up = spec.pct_start * total - 1
        for k in range(total):
            if k <= up:
                a, b, frac = start, lr, k / up
            else:
                a, b, frac = lr, end, (k - up) / (total - 1 - up)
            out.append(b + (a - b) / 2 * (1 + math.cos(math.pi * frac)))
        return out
    if spec.kind == "wsd":
        w = spec.warmup_epochs * steps
        decay = max(1, math.ceil(spec.decay_fraction * total))
        stable_end = total - decay
        for k in range(total):
            if k < w:
                out.append(lr * (spec.warmup_start_factor + (1 - spec.warmup_start_factor) * k / w))
            elif k < stable_end:
                out.append(lr)
            else:
                frac = (k - stable_end) / max(decay - 1, 1)
                out.append(lr + (spec.min_lr - lr) * frac)
        return out
    if spec.kind == "schedulefree":
        w = spec.warmup_epochs * steps
        return [lr * (spec.warmup_start_factor + (1 - spec.warmup_start_factor) * min(k, w) / w)
                if w else lr for k in range(total)]
    raise AssertionError(f"no reference for kind {spec.kind}: add one")


CASES = [(item, budget) for item in BUILTIN for budget in (30, 60, 100)]


@pytest.mark.parametrize("item,budget", CASES, ids=[f"{i.name}-{b}" for i, b in CASES])
def test_lr_path_matches_definition_at_every_step(item, budget):
    got, _ = simulate(item.spec, budget)
    want = reference(item.spec, budget)
    assert len(got) == len(want) == budget * STEPS
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("item", list(BUILTIN), ids=BUILTIN.names())
def test_restored_scheduler_continues_the_same_path(item):
    budget = 30
    full, _ = simulate(item.spec, budget)
    head, state = simulate(item.spec, budget, stop_at=13)
    tail, _ = simulate(item.spec, budget, start_state=state)
    assert head + tail == full


def test_seed_schedules_hit_the_notes_landmarks():
    def per_epoch(name, budget):
        return simulate(BUILTIN.get(name).spec, budget, steps=1)[0]

    ms = per_epoch("multistep", 100)
    assert (ms[0], ms[29], ms[30], ms[59], ms[60], ms[89], ms[90], ms[99]) == pytest.approx(
        (1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6))
    assert set(per_epoch("multistep", 30)) == {1e-3}  # a 30-epoch run never decays
    scaled = per_epoch("multistep_scaled", 30)
    assert (scaled[8], scaled[9], scaled[18], scaled[27]) == pytest.approx((1e-3, 1e-4, 1e-5, 1e-6))
    wc = simulate(BUILTIN.get("warmup_cosine").spec, 30)[0]
    w = 5 * STEPS
    assert wc[0] == pytest.approx(1e-5) and wc[w] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(wc[:w], wc[1:w + 1]))  # rises over the warmup
    assert wc[-1] == pytest.approx(1e-5)  # floor at the budget's last step


def test_plateau_halves_after_six_epochs_without_improvement():
    lrs = simulate(BUILTIN.get("plateau").spec, 30, steps=1)[0]
    # The metric improves until epoch 3, so epochs 4..9 are the six without improvement.
    assert lrs[9] == 5e-4 and lrs[10] == 2.5e-4
    assert lrs[15] == 2.5e-4 and lrs[16] == 1.25e-4


def test_registry_rejects_unknown_and_duplicate_names():
    with pytest.raises(ScheduleError, match="did you mean 'multistep'"):
        BUILTIN.get("multistpe")
    reg = BUILTIN.copy()
    with pytest.raises(ScheduleError, match="already registered"):
        reg.add(NamedSchedule("plateau", Plateau(lr=1e-3), "dup"))
    with pytest.raises(ScheduleError, match="unknown schedule or group"):
        reg.select("plateau,nonsense")


def test_groups():
    groups = BUILTIN.groups()
    assert groups["seed"] == ["plateau", "multistep", "warmup_cosine"]
    assert set(groups["ablation"]) == {"plateau", "multistep", "plateau_lr1e-3_wd5e-4",
                                       "multistep_lr5e-4_wd0"}
    assert [s.name for s in BUILTIN.select("all")] == BUILTIN.names()
    assert [s.name for s in BUILTIN.select("seed,constant,plateau")] == [
        "plateau", "multistep", "warmup_cosine", "constant"]


def test_every_kind_is_registered_at_least_once():
    assert {item.spec.kind for item in BUILTIN} == set(KINDS)


def test_seed_schedules_are_exactly_the_notes():
    p, m, w = (BUILTIN.get(n).spec for n in ("plateau", "multistep", "warmup_cosine"))
    assert (p.lr, p.weight_decay, p.factor, p.patience, p.optimizer) == (5e-4, 0.0, 0.5, 5, "adam")
    assert (m.lr, m.weight_decay, m.milestones, m.gamma) == (1e-3, 5e-4, (30, 60, 90), 0.1)
    assert (w.lr, w.weight_decay, w.step_unit) == (1e-3, 5e-4, "step")
    assert p.needs_metric and not m.needs_metric
    assert not p.budget_dependent and not m.budget_dependent and w.budget_dependent


@pytest.mark.parametrize("make,match", [
    (lambda: MultiStep(lr=1e-3, milestones=(60, 30)), "strictly increasing"),
    (lambda: MultiStep(lr=1e-3, milestones=(0, 30)), "positive"),
    (lambda: MultiStep(lr=-1.0), "lr must be"),
    (lambda: Plateau(lr=1e-3, factor=1.5), "factor"),
    (lambda: WarmupCosine(lr=1e-3, min_lr=1e-2), "min_lr"),
    (lambda: WarmupStableDecay(lr=1e-3, decay_fraction=0.0), "decay_fraction"),
    (lambda: Plateau(lr=1e-3, optimizer="rmsprop"), "optimizer"),
])
def test_invalid_specs_raise(make, match):
    with pytest.raises(ScheduleError, match=match):
        make()


def test_budget_too_short_for_warmup_raises():
    with pytest.raises(ScheduleError, match="warmup_epochs"):
        simulate(WarmupCosine(lr=1e-3, warmup_epochs=10), 10)


def test_genuine_torch_scheduler_objects():
    p = torch.nn.Parameter(torch.zeros(1))
    for item in Registry(BUILTIN):
        sched = item.spec.build(item.spec.make_optimizer([p]), 30, 5)
        assert isinstance(sched, (torch.optim.lr_scheduler.LRScheduler,
                                  torch.optim.lr_scheduler.ReduceLROnPlateau))


# -- the optimizer as part of the spec ------------------------------------------------------
def _groups(opt):
    """param_groups without the tensors and the implementation (``foreach``/``fused``), for
    comparing two optimizers' settings."""
    return [{k: v for k, v in g.items() if k not in ("params", "foreach", "fused")}
            for g in opt.param_groups]


@pytest.mark.parametrize("spec", [
    Constant(lr=1e-3),
    Constant(lr=1e-3, weight_decay=5e-4),
    Constant(lr=1e-3, weight_decay=0.01, optimizer="adamw", betas=(0.8, 0.99)),
    Constant(lr=0.05, weight_decay=5e-4, optimizer="sgd", momentum=0.9, nesterov=True),
    Constant(lr=0.05, optimizer="sgd"),
], ids=["adam", "adam-wd", "adamw", "sgd-nesterov", "sgd-plain"])
def test_cpu_optimizer_implementation_computes_torchs_default_numbers(spec):
    """On the CPU the suite's optimizer is the multi-tensor implementation; every weight must
    equal that of torch's default per-parameter one after 60 clipped steps under a one-cycle
    schedule, or earlier results would not reproduce."""
    torch.manual_seed(0)
    shapes = [(48, 16), (16,), (64, 64), (64,), (12, 64), (12,), (7, 16)]
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    plain = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    start = ours[0].detach().clone()
    opt_a = spec.make_optimizer(ours)
    assert opt_a.param_groups[0]["foreach"] is True
    opt_b = spec.make_optimizer(plain)
    opt_b.param_groups[0]["foreach"] = False  # torch's per-parameter loop
    sched_a, sched_b = (torch.optim.lr_scheduler.OneCycleLR(o, max_lr=3 * spec.lr,
                                                            total_steps=60,
                                                            cycle_momentum=False)
                        for o in (opt_a, opt_b))
    for step in range(60):
        for a, b in zip(ours, plain):
            g = torch.randn(a.shape) * (20.0 if step % 7 == 0 else 1.0)  # some steps clip
            a.grad, b.grad = g.clone(), g.clone()
        for params, opt, sched in ((ours, opt_a, sched_a), (plain, opt_b, sched_b)):
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
    for a, b in zip(ours, plain):
        assert torch.equal(a, b)
    assert not torch.equal(ours[0], start)  # the steps did move the weights


@pytest.mark.parametrize("spec,cls,options", [
    (Constant(lr=1e-3, weight_decay=5e-4, betas=(0.8, 0.99)), torch.optim.Adam,
     {"betas": (0.8, 0.99), "weight_decay": 5e-4}),
    (Constant(lr=1e-3, weight_decay=0.01, optimizer="adamw", betas=(0.9, 0.98)),
     torch.optim.AdamW, {"betas": (0.9, 0.98), "weight_decay": 0.01}),
    (Constant(lr=0.1, weight_decay=5e-4, optimizer="sgd", momentum=0.9, nesterov=True),
     torch.optim.SGD, {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "dampening": 0}),
    (Constant(lr=0.1, optimizer="sgd"), torch.optim.SGD, {"momentum": 0.0, "nesterov": False}),
])
def test_each_optimizer_is_the_genuine_torch_class_with_its_options(spec, cls, options):
    p = torch.nn.Parameter(torch.zeros(3))
    opt = spec.make_optimizer([p])
    assert type(opt) is cls
    (group,) = opt.param_groups
    assert group["params"] == [p] and group["lr"] == spec.lr
    assert {k: group[k] for k in options} == options


def test_schedulefree_gets_its_betas():
    import schedulefree

    spec = ScheduleFree(lr=1e-3, weight_decay=5e-4, betas=(0.95, 0.99))
    opt = spec.make_optimizer([torch.nn.Parameter(torch.zeros(2))])
    assert type(opt) is schedulefree.AdamWScheduleFree
    group = opt.param_groups[0]
    assert (group["betas"], group["weight_decay"], group["warmup_steps"]) == ((0.95, 0.99),
                                                                            5e-4, 0)


@pytest.mark.parametrize("item", list(BUILTIN), ids=BUILTIN.names())
def test_default_optimizer_settings_build_what_they_always_did(item):
    """The registry's specs leave the new options at their defaults: same optimizer as before."""
    spec = item.spec
    p = torch.nn.Parameter(torch.zeros(2))
    if spec.optimizer == "adam":
        want = torch.optim.Adam([p], lr=spec.lr, weight_decay=spec.weight_decay)
        got = spec.make_optimizer([p])
        assert type(got) is torch.optim.Adam
        assert _groups(got) == _groups(want)
        assert got.param_groups[0]["params"][0] is p
    assert (spec.betas, spec.momentum, spec.nesterov) == ((0.9, 0.999), 0.0, False)


def test_hyperparameters_text_unchanged_for_defaults_and_names_set_options():
    assert Plateau(lr=5e-4).hyperparameters() == "lr=0.0005, factor=0.5, patience=5"
    assert Constant(lr=1e-3, weight_decay=5e-4).hyperparameters() == "lr=0.001, wd=0.0005"
    assert (ScheduleFree(lr=1e-3).hyperparameters()
            == "lr=0.001, schedulefree_adamw, warmup 5 ep, iterate averaging")
    sgd = Constant(lr=0.1, optimizer="sgd", momentum=0.9, nesterov=True)
    assert sgd.hyperparameters() == "lr=0.1, sgd, momentum=0.9, nesterov"
    assert Constant(lr=1e-3, betas=(0.9, 0.98)).hyperparameters() == "lr=0.001, betas=(0.9, 0.98)"


def test_sgd_step_with_momentum_matches_torch_exactly():
    torch.manual_seed(0)
    w0 = torch.randn(5, 4)
    spec = Constant(lr=0.05, weight_decay=5e-4, optimizer="sgd", momentum=0.9, nesterov=True)
    a, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    opt_a = spec.make_optimizer([a])
    opt_b = torch.optim.SGD([b], lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for _ in range(3):  # the first step only seeds the momentum buffer; later ones use it
        g = torch.randn(5, 4)
        a.grad, b.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
        assert torch.equal(a, b)
    assert not torch.equal(a, w0)


@pytest.mark.parametrize("make,match", [
    (lambda: Constant(lr=0.1, optimizer="sgd", nesterov=True), "nesterov needs momentum > 0"),
    (lambda: Constant(lr=1e-3, momentum=0.9),
     "momentum applies to optimizer 'sgd' only, got optimizer 'adam'"),
    (lambda: Constant(lr=1e-3, optimizer="adamw", nesterov=True),
     "nesterov applies to optimizer 'sgd' only, got optimizer 'adamw'"),
    (lambda: Constant(lr=0.1, optimizer="sgd", betas=(0.8, 0.9)),
     "betas applies to optimizer .* only, got optimizer 'sgd'"),
    (lambda: Constant(lr=1e-3, betas=(0.9, 1.0)), r"betas must be two numbers in \[0, 1\)"),
    (lambda: Constant(lr=1e-3, betas=(-0.1, 0.9)), "betas must be"),
    (lambda: Constant(lr=1e-3, betas=(0.9,)), "betas must be"),
    (lambda: Constant(lr=1e-3, betas=(0.9, 0.99, 0.999)), "betas must be"),
    (lambda: Constant(lr=1e-3, betas=("a", 0.9)), "betas must be"),
    (lambda: Constant(lr=1e-3, betas=(True, 0.9)), "betas must be"),
    (lambda: Constant(lr=1e-3, betas=0.9), "betas must be"),
    (lambda: Constant(lr=0.1, optimizer="sgd", momentum=1.0), r"momentum must be in \[0, 1\)"),
    (lambda: Constant(lr=0.1, optimizer="sgd", momentum=-0.5), "momentum must be"),
    (lambda: Constant(lr=0.1, optimizer="sgd", momentum=0.9, nesterov="yes"), "nesterov must"),
    (lambda: OneCycle(lr=1e-3, betas=(0.8, 0.999)), "betas\\[0\\] has no effect with onecycle"),
    (lambda: OneCycle(lr=0.1, optimizer="sgd", momentum=0.9), "momentum has no effect"),
])
def test_invalid_optimizer_options_raise(make, match):
    with pytest.raises(ScheduleError, match=match):
        make()


def test_betas_given_as_a_list_become_a_tuple_and_the_spec_stays_hashable():
    spec = Constant(lr=1e-3, betas=[0.9, 0.98])
    assert spec.betas == (0.9, 0.98) and isinstance(spec.betas, tuple)
    assert hash(spec) == hash(Constant(lr=1e-3, betas=(0.9, 0.98)))
    assert spec == Constant(lr=1e-3, betas=(0.9, 0.98))
    d = spec.to_dict()
    assert d["kind"] == "constant" and tuple(d["betas"]) == (0.9, 0.98)
    assert (d["optimizer"], d["momentum"], d["nesterov"]) == ("adam", 0.0, False)


@pytest.mark.parametrize("spec,text", [
    (Constant(lr=1e-3, weight_decay=5e-4), "Adam (β=0.9/0.999, coupled wd 5e-4)"),
    (Constant(lr=1e-3), "Adam (β=0.9/0.999, no wd)"),
    (Constant(lr=1e-3, weight_decay=0.01, optimizer="adamw"),
     "AdamW (β=0.9/0.999, decoupled wd 0.01)"),
    (Constant(lr=0.1, weight_decay=5e-4, optimizer="sgd", momentum=0.9, nesterov=True),
     "SGD (momentum 0.9, Nesterov, wd 5e-4)"),
    (Constant(lr=0.1, optimizer="sgd"), "SGD (no momentum, no wd)"),
    (ScheduleFree(lr=1e-3, weight_decay=5e-4),
     "schedule-free AdamW (β=0.9/0.999, decoupled wd 5e-4)"),
    (OneCycle(lr=1e-3, betas=(0.9, 0.98)), "Adam (β1 cycled 0.85-0.95, β2=0.98, no wd)"),
    (OneCycle(lr=0.1, optimizer="sgd"), "SGD (momentum cycled 0.85-0.95, no wd)"),
])
def test_optimizer_text_names_the_optimizer(spec, text):
    assert spec.optimizer_text() == text


@pytest.mark.parametrize("item", list(BUILTIN), ids=BUILTIN.names())
def test_every_registered_schedule_describes_its_optimizer(item):
    name = {"adam": "Adam (", "adamw": "AdamW (", "sgd": "SGD (",
            "schedulefree_adamw": "schedule-free AdamW ("}[item.spec.optimizer]
    assert item.spec.optimizer_text().startswith(name)


def test_onecycle_cycles_sgd_momentum_as_torch_does():
    spec = OneCycle(lr=0.1, optimizer="sgd")
    opt = spec.make_optimizer([torch.nn.Parameter(torch.zeros(2))])
    spec.build(opt, 10, 5)
    assert type(opt) is torch.optim.SGD and opt.param_groups[0]["momentum"] == 0.95

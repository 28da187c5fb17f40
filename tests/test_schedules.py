"""Every registered schedule against its definition, at every step, and across a resume."""

import math

import pytest
import torch

from schedules import BUILTIN, KINDS, NamedSchedule, Registry, ScheduleError
from schedules.kinds import MultiStep, Plateau, WarmupCosine, WarmupStableDecay

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
    (lambda: Plateau(lr=1e-3, optimizer="sgd"), "optimizer"),
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

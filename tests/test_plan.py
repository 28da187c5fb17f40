"""The grid folded into jobs, sharded and grouped for fused execution."""

from __future__ import annotations

import pytest

from bench.plan import Job, fold, longest_first, plan_jobs, shard, units
from schedules import BUILTIN

SCHEDULES = [BUILTIN.get(n) for n in ("plateau", "warmup_cosine", "multistep")]


def test_fold_trains_budget_independent_schedules_once_to_the_longest_budget():
    assert fold("plateau", False, 2, (60, 30)) == [Job("plateau", 2, 60, (30, 60), True)]
    assert fold("cos", True, 2, (60, 30)) == [Job("cos", 2, 30, (30,), False),
                                              Job("cos", 2, 60, (60,), False)]


def test_plan_is_seed_major_and_covers_every_cell():
    jobs = plan_jobs(SCHEDULES, (30, 60), (0, 1))
    assert [j.seed for j in jobs] == [0, 0, 0, 0, 1, 1, 1, 1]
    cells = {(j.schedule, b, j.seed) for j in jobs for b in j.budgets}
    assert cells == {(s.name, b, seed) for s in SCHEDULES for b in (30, 60) for seed in (0, 1)}
    assert len({j.key for j in jobs}) == len(jobs)  # one folder per job


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20])
def test_shards_are_disjoint_and_complete(n):
    jobs = plan_jobs(SCHEDULES, (30, 60, 100), (0, 1, 2))
    parts = [shard(jobs, f"{i}/{n}") for i in range(1, n + 1)]
    assert sorted(j.key for p in parts for j in p) == sorted(j.key for j in jobs)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # dealt round-robin


@pytest.mark.parametrize("spec", ["0/3", "4/3", "1/0", "a/b", "2", "1/2/3"])
def test_bad_shard_specs_raise(spec):
    with pytest.raises(ValueError, match="shard"):
        shard([], spec)


def test_units_group_only_jobs_of_equal_length():
    jobs = plan_jobs(SCHEDULES, (30, 60), (0, 1))
    assert units(jobs, 1) == [[j] for j in jobs]
    groups = units(jobs, 2)
    assert all(len({j.epochs for j in g}) == 1 and len(g) <= 2 for g in groups)
    assert sorted(j.key for g in groups for j in g) == sorted(j.key for j in jobs)


def test_longest_first_orders_units_by_epochs_left_to_train():
    """Epochs forked from a trunk and epochs done already are not left to train; ties keep
    their order."""
    tree = [Job("multistep", 0, 100, (30, 60, 100), True),
            Job("constant", 0, 100, (30, 60, 100), True, trunk="multistep/seed0",
                trunk_epochs=30)]                                     # 100 + 70 left
    resumed = [Job("plateau", 0, 100, (30, 60, 100), True)]           # 100 - 80 done = 20
    short_a = [Job("onecycle", 0, 30, (30,), False)]                  # 30
    short_b = [Job("linear_decay", 0, 30, (30,), False)]              # 30, after short_a
    long_one = [Job("onecycle", 0, 100, (100,), False)]               # 100
    work = [short_a, resumed, tree, short_b, long_one]
    ordered = longest_first(work, {"plateau/seed0": 80})
    assert ordered == [tree, long_one, short_a, short_b, resumed]
    assert longest_first(work, {}) == [tree, resumed, long_one, short_a, short_b]

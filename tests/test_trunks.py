"""Shared trunks: runs that follow the same lr path for a while train it once, and every
forked run records exactly what it records when trained alone."""

import csv
import json
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.plan import plan_jobs
from bench.profile import load_resolved
from bench.selection import resolve_schedules
from bench.trunks import Shadow, shared_epochs, trunk_units

PROFILE = """
description: tiny trunk profile
dataset: {name: synthetic-la, options: {nodes: 8, days: 3, seed: 0}}
model: {name: stid, options: {embed_dim: 8, node_dim: 4, tod_dim: 4, dow_dim: 4, num_layers: 1}}
train: {batch_size: 32}
budgets: [4, 8]
seeds: [0]
device: cpu
threads: 1
"""

SCHEDULES = """
const: {kind: constant, lr: 1.0e-3, weight_decay: 5.0e-4}
steps: {kind: multistep, lr: 1.0e-3, weight_decay: 5.0e-4, milestones: [3, 6], gamma: 0.5}
plat: {kind: plateau, lr: 1.0e-3, weight_decay: 5.0e-4, patience: 0, factor: 0.5,
       threshold: 0.2}
cos: {kind: warmup_cosine, lr: 1.0e-3, weight_decay: 5.0e-4, warmup_epochs: 2}
alone: {kind: constant, lr: 3.0e-3}
"""


def read(path: Path) -> list[dict]:
    with open(path) as fh:
        return [{k: v for k, v in row.items() if "seconds" not in k} for row in csv.DictReader(fh)]


@pytest.fixture
def files(tmp_path):
    profile = tmp_path / "trunk.yaml"
    profile.write_text(PROFILE)
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text(SCHEDULES)
    return profile, schedules


def run(files, results, names, experiment, *extra):
    profile, schedules = files
    assert main(["run", "--profile", str(profile), "--schedule-file", str(schedules),
                 "--schedules", names, "--results", str(results),
                 "--experiment", experiment, *extra]) == 0


def status(results, experiment, key) -> dict:
    return json.loads((results / experiment / "runs" / key / "status.json").read_text())


def test_forked_runs_match_standalone_runs_bit_for_bit(files, tmp_path):
    results = tmp_path / "results"
    run(files, results, "const,steps,plat,cos,alone", "shared")
    # The forks happened where the paths part: the first milestone, the warmup's end, the
    # plateau's first reduction (patience 0: after the first epoch that does not improve on
    # the best by 20 %).
    steps = status(results, "shared", "steps/seed0")
    assert steps["forked_from"] == "const/seed0" and steps["fork_epoch"] == 3
    cos4 = status(results, "shared", "cos/e4-seed0")
    assert cos4["forked_from"] == "cos/e8-seed0" and cos4["fork_epoch"] == 2
    plat = status(results, "shared", "plat/seed0")
    assert plat["forked_from"] == "const/seed0" and 1 <= plat["fork_epoch"] < 8
    assert "forked_from" not in status(results, "shared", "alone/seed0")
    assert "forked_from" not in status(results, "shared", "const/seed0")
    shared = read(results / "shared" / "epochs.csv")
    for name, budget in (("steps", "8"), ("plat", "8"), ("const", "8"), ("cos", "8"),
                         ("cos", "4")):
        run(files, results, name, f"only-{name}-{budget}", "--budgets", budget)
        alone = read(results / f"only-{name}-{budget}" / "epochs.csv")
        assert alone and alone == [r for r in shared if r["schedule"] == name and
                                   r["budget"] == budget], (name, budget)
    # The plateau's lr really was reduced after the fork, so the replay was exercised.
    lrs = [float(r["lr"]) for r in shared if r["schedule"] == "plat" and r["budget"] == "8"]
    assert lrs[0] == 1e-3 and min(lrs) < 1e-3


def test_a_second_invocation_trains_nothing_and_keeps_the_forks(files, tmp_path, capsys):
    results = tmp_path / "results"
    run(files, results, "const,steps", "shared")
    before = (results / "shared" / "epochs.csv").read_text()
    capsys.readouterr()
    run(files, results, "const,steps", "shared")
    err = capsys.readouterr().err
    assert "finished " not in err and "2 skipped" in err
    assert (results / "shared" / "epochs.csv").read_text() == before


def test_a_child_whose_parent_is_already_done_trains_alone(files, tmp_path):
    results = tmp_path / "results"
    run(files, results, "const", "grow")
    run(files, results, "const,steps", "grow")
    assert "forked_from" not in status(results, "grow", "steps/seed0")
    run(files, results, "steps", "only-steps")
    grow = [r for r in read(results / "grow" / "epochs.csv") if r["schedule"] == "steps"]
    assert grow == read(results / "only-steps" / "epochs.csv")


def test_default_grid_trees():
    """The suite's own schedules: who forks from whom, and the epochs that saves."""
    profile = load_resolved("default")
    items = {s.name: s for s in resolve_schedules(profile)}
    jobs = plan_jobs(list(items.values()), (30, 60, 100), (0,))
    units = trunk_units(jobs, items, steps_per_epoch=44)
    parent = {j.key: j.trunk for unit in units for j in unit}
    # constant and multistep share 30 epochs (either may be the trunk: both run 100).
    assert {parent["multistep/seed0"], parent["constant/seed0"]} == {None, "multistep/seed0"} \
        or {parent["multistep/seed0"], parent["constant/seed0"]} == {None, "constant/seed0"}
    assert parent["plateau_lr1e-3_wd5e-4/seed0"] in ("constant/seed0", "multistep/seed0")
    assert parent["multistep_scaled/e100-seed0"] == "multistep/seed0"  # the same 100 epochs
    assert parent["warmup_cosine/e30-seed0"] == "warmup_cosine/e100-seed0"
    assert parent["wsd/e30-seed0"] == "wsd/e100-seed0"
    assert parent["plateau/seed0"] is None  # lr 5e-4 and no weight decay: shares nothing
    assert parent["schedulefree/seed0"] is None
    planned = {j.key: j.trunk_epochs for unit in units for j in unit}
    assert planned["multistep_scaled/e100-seed0"] == 100
    assert planned["wsd/e30-seed0"] == 24  # WSD decays over its last 20 %
    assert planned["plateau_lr1e-3_wd5e-4/seed0"] == 0  # its metric decides, while it trains
    assert planned["plateau/seed0"] == 0
    assert sorted(j.key for unit in units for j in unit) == sorted(j.key for j in jobs)
    for unit in units:  # a parent comes before its children
        seen = set()
        for job in unit:
            assert job.trunk is None or job.trunk in seen
            seen.add(job.key)


def test_shared_epochs_follow_the_definitions():
    items = {s.name: s for s in resolve_schedules(load_resolved("default"))}
    c, m = items["constant"], items["multistep"]
    assert shared_epochs(c, 100, m, 100, 10) == 30
    assert shared_epochs(c, 30, m, 30, 10) == 30  # MultiStepLR never decays within 30
    assert shared_epochs(items["multistep_scaled"], 30, c, 100, 10) == 9
    w30, w100 = items["wsd"], items["wsd"]
    assert shared_epochs(w30, 30, w100, 100, 10) == 24  # decays over the last 20 % of 30
    assert shared_epochs(items["warmup_cosine"], 30, items["warmup_cosine"], 100, 10) == 5


def test_a_shadow_steps_like_the_engine():
    """The stand-in scheduler reports the settings the real optimizer holds at every step,
    for a per-step schedule that also cycles Adam's beta1 (one-cycle)."""
    item = {s.name: s for s in resolve_schedules(load_resolved("default"))}["onecycle"]
    shadow = Shadow(item, 3, 7)
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = item.spec.make_optimizer(params)
    scheduler = item.spec.build(optimizer, 3, 7)
    seen = set()
    for _ in range(3):
        path = shadow.epoch_path()
        for step in range(7):
            real = tuple(tuple(tuple(g[k]) if isinstance(g[k], list) else g[k]
                               for k in shadow.keys) for g in optimizer.param_groups)
            assert path[step] == real
            seen.add(real)
            params[0].grad = torch.ones(2)
            optimizer.step()
            scheduler.step()
        shadow.advance(None)
    assert len(seen) == 21  # every step's settings differ: the comparison is not vacuous


@pytest.mark.slow
def test_stopped_after_a_fork_resumes_to_the_same_records(files, tmp_path):
    """A fork is an ordinary resumable run: stop the grid once the child's fork is on disk,
    run the same command again, and every record equals an uninterrupted grid's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    profile, schedules = files
    profile.write_text(PROFILE.replace("days: 3", "days: 12"))  # epochs long enough to stop
    repo = Path(__file__).resolve().parents[1]
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench", "run", "--profile", str(profile), "--schedule-file",
           str(schedules), "--schedules", "const,steps", "--results", str(results),
           "--experiment", "stopped"]
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=str(repo),
                                                OMP_NUM_THREADS="1"))
    child = results / "stopped" / "runs" / "steps" / "seed0" / "status.json"
    deadline = time.time() + 120
    while not child.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    forked = json.loads(child.read_text())
    assert forked["fork_epoch"] == 3 and forked["epochs_done"] == 3  # stopped before training it
    run(files, results, "const,steps", "stopped")
    run(files, results, "const,steps", "uninterrupted")
    assert read(results / "stopped" / "epochs.csv") == \
        read(results / "uninterrupted" / "epochs.csv")
    assert json.loads(child.read_text())["forked_from"] == "const/seed0"  # kept on resume


def test_a_failing_fork_never_fails_its_parent(files, tmp_path, monkeypatch, capsys):
    import bench.trunks as trunks

    def broken(self, trainer):
        raise RuntimeError("stand-in broke")

    monkeypatch.setattr(trunks.Forker, "after_epoch", broken)
    results = tmp_path / "results"
    run(files, results, "const,steps", "broken")
    err = capsys.readouterr().err
    assert "forking its children stopped (RuntimeError: stand-in broke); they train alone" in err
    assert status(results, "broken", "const/seed0")["status"] == "finished"
    steps = status(results, "broken", "steps/seed0")
    assert steps["status"] == "finished" and "forked_from" not in steps
    run(files, results, "steps", "only-steps")
    assert [r for r in read(results / "broken" / "epochs.csv") if r["schedule"] == "steps"] \
        == read(results / "only-steps" / "epochs.csv")

"""The Ray executor: same records as the local one, and a killed worker is retried and resumed."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the optional 'ray' extra is not installed")

from bench.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = """
description: tiny ray test profile
dataset: {name: synthetic-la, options: {nodes: 12, days: 3, seed: 0}}
model: {name: stid, options: {embed_dim: 8, node_dim: 4, tod_dim: 4, dow_dim: 4, num_layers: 1}}
train: {batch_size: 16}
schedules: plateau,warmup_cosine
budgets: [6, 10]
seeds: [0]
device: cpu
threads: 1
"""


def read(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def metrics_only(rows):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    profile = root / "tiny.yaml"
    profile.write_text(TINY)
    assert main(["run", "--profile", str(profile), "--results", str(root / "local")]) == 0
    return root, profile, metrics_only(read(root / "local/tiny/epochs.csv"))


@pytest.mark.slow
def test_ray_executor_gives_the_local_records(setup):
    root, profile, local = setup
    code = main(["run", "--profile", str(profile), "--results", str(root / "ray"),
                 "--executor", "ray"])
    assert code == 0
    assert metrics_only(read(root / "ray/tiny/epochs.csv")) == local
    summary = read(root / "ray/tiny/summary.csv")
    assert len(summary) == 4 and {r["status"] for r in summary} == {"finished"}


@pytest.mark.slow
def test_killed_ray_worker_is_retried_and_the_grid_completes(setup):
    root, profile, local = setup
    slow = root / "slow.yaml"  # one run with longer epochs, so the kill lands mid-run
    slow.write_text(TINY.replace("batch_size: 16", "batch_size: 8")
                    .replace("schedules: plateau,warmup_cosine", "schedules: plateau")
                    .replace("budgets: [6, 10]", "budgets: [8]"))
    assert main(["run", "--profile", str(slow), "--results", str(root / "slow-local")]) == 0
    reference = metrics_only(read(root / "slow-local/slow/epochs.csv"))

    results = root / "ray-killed"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "--profile", str(slow),
                             "--results", str(results), "--executor", "ray"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    run = results / "slow/runs/plateau/seed0"
    deadline = time.time() + 240
    killed = None
    while time.time() < deadline and killed is None:
        try:
            if json.loads((run / "status.json").read_text())["epochs_done"] >= 2:
                killed = int((run / "lock").read_text().split()[1])
                os.kill(killed, signal.SIGKILL)
        except (OSError, ValueError, KeyError, IndexError):
            time.sleep(0.05)
    assert killed is not None, "the run never reached epoch 2"
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert killed != os.getpid()
    assert metrics_only(read(results / "slow/epochs.csv")) == reference

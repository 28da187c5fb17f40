"""Nothing lost, nothing silently wrong: kills, damaged files, locks, divergence, Ctrl-C,
full disks."""

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main

TINY = """
description: tiny test profile
dataset: {name: synthetic-la, options: {nodes: 12, days: 3, seed: 0}}
model: {name: stid, options: {embed_dim: 8, node_dim: 4, tod_dim: 4, dow_dim: 4, num_layers: 1}}
train: {batch_size: 16}
schedules: plateau
budgets: [12]
seeds: [0]
device: cpu
"""

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def profile(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def read(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def metrics_only(rows):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def command(profile, results, *extra) -> list[str]:
    return [sys.executable, "-m", "bench", "run", "--profile", str(profile), "--results",
            str(results), *extra]


def start(cmd) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_epochs(status: Path, epochs: int, proc: subprocess.Popen, timeout=120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.communicate()}")
        try:
            if json.loads(status.read_text()).get("epochs_done", 0) >= epochs:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError("timed out waiting for epochs")


@pytest.fixture
def reference(profile, tmp_path) -> list[dict]:
    """Records of an uninterrupted run."""
    assert main(["run", "--profile", str(profile), "--results", str(tmp_path / "ref")]) == 0
    return metrics_only(read(tmp_path / "ref/tiny/epochs.csv"))


@pytest.fixture
def long_profile(tmp_path) -> Path:
    """The tiny profile on 10 days of data, one thread: epochs long enough (0.1-0.5 s) that
    a stop sent after epoch 3 lands well before epoch 12; on 3 days a fast host finished the
    whole run before the signal reached it."""
    path = tmp_path / "long" / "tiny.yaml"
    path.parent.mkdir()
    path.write_text(TINY.replace("days: 3", "days: 10") + "threads: 1\n")
    return path


@pytest.fixture
def long_reference(long_profile, tmp_path) -> list[dict]:
    assert main(["run", "--profile", str(long_profile), "--results",
                 str(tmp_path / "long-ref")]) == 0
    return metrics_only(read(tmp_path / "long-ref/tiny/epochs.csv"))


@pytest.mark.slow
def test_sigkill_mid_training_then_restart_gives_identical_records(profile, tmp_path, reference):
    results = tmp_path / "killed"
    status = results / "tiny/runs/plateau/seed0/status.json"
    for kill_after in (3, 7):  # killed twice, at different points of the run
        proc = start(command(profile, results))
        wait_for_epochs(status, kill_after, proc)
        time.sleep(0.05 * kill_after)  # land somewhere inside an epoch or a write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run(command(profile, results), cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    assert metrics_only(read(results / "tiny/epochs.csv")) == reference
    # A killed writer's temporary file is removed when its folder is next opened.
    assert not list(results.rglob("*.tmp"))


def test_damaged_records_are_reported_and_the_run_redone(profile, tmp_path, reference, capsys):
    results = tmp_path / "ref"  # the finished reference run
    records = results / "tiny/runs/plateau/seed0/records.csv"
    text = records.read_text()
    records.write_text(text[: len(text) // 2])  # truncated mid-row
    capsys.readouterr()
    assert main(["run", "--profile", str(profile), "--results", str(results)]) == 0
    err = capsys.readouterr().err
    assert str(records) in err and "redone" in err
    assert "finished  plateau/seed0: 12 epochs" in err
    assert metrics_only(read(results / "tiny/epochs.csv")) == reference


def test_unreadable_checkpoint_is_reported_and_the_run_redone(profile, tmp_path, reference,
                                                              capsys):
    results = tmp_path / "ref"
    run = results / "tiny/runs/plateau/seed0"
    status = json.loads((run / "status.json").read_text())
    status.update(status="running", epochs_done=5)  # as if killed after epoch 5
    (run / "status.json").write_text(json.dumps(status))
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(["run", "--profile", str(profile), "--results", str(results)]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "checkpoint.pt: checksum differs" in notes[0], err
    assert "redone" in notes[0]
    assert metrics_only(read(results / "tiny/epochs.csv")) == reference


def test_changed_config_is_detected_by_hash(profile, tmp_path, reference, capsys):
    results = tmp_path / "ref"
    status_path = results / "tiny/runs/plateau/seed0/status.json"
    status = json.loads(status_path.read_text())
    status["config_hash"] = "0" * 16
    status_path.write_text(json.dumps(status))
    capsys.readouterr()
    assert main(["run", "--profile", str(profile), "--results", str(results)]) == 0
    err = capsys.readouterr().err
    assert "config hash" in err and "redone" in err
    assert metrics_only(read(results / "tiny/epochs.csv")) == reference


@pytest.mark.slow
def test_two_processes_never_train_the_same_run(profile, tmp_path):
    results = tmp_path / "shared"
    cmd = command(profile, results, "--schedules", "plateau,multistep,constant", "--seeds", "2")
    procs = [start(cmd) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    trained = [line.split()[1] for _, err in outs for line in err.splitlines()
               if line.startswith("finished ")]
    assert sorted(trained) == sorted(set(trained))  # no run trained by both
    assert len(set(trained)) == 6
    rows = read(results / "tiny/summary.csv")
    assert len(rows) == 6 and {r["status"] for r in rows} == {"finished"}


def test_diverging_run_is_recorded_and_the_grid_goes_on(profile, tmp_path, capsys):
    sched = tmp_path / "wild.yaml"
    sched.write_text("wild:\n  kind: constant\n  lr: 10.0\n")
    prof = tmp_path / "noclip.yaml"
    prof.write_text(TINY.replace("train: {batch_size: 16}",
                                 "train: {batch_size: 16, grad_clip: null}"))
    code = main(["run", "--profile", str(prof), "--results", str(tmp_path / "r"),
                 "--schedule-file", str(sched), "--schedules", "wild,plateau"])
    assert code == 0
    rows = {r["schedule"]: r for r in read(tmp_path / "r/noclip/summary.csv")}
    assert rows["wild"]["status"] == "diverged" and rows["wild"]["diverged_epoch"] != ""
    assert rows["plateau"]["status"] == "finished"
    assert main(["report", "--results", str(tmp_path / "r"), "--experiment", "noclip",
                 "--out", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep/noclip/report.md").read_text()
    assert "diverged at epoch" in report


@pytest.mark.slow
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_leaves_everything_resumable(long_profile, tmp_path, long_reference, presses):
    profile, reference = long_profile, long_reference
    results = tmp_path / "int"
    status = results / "tiny/runs/plateau/seed0/status.json"
    proc = start(command(profile, results))
    wait_for_epochs(status, 3, proc)
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    if presses == 1:
        assert "stopping after the current epoch" in err
        assert "stopped by Ctrl-C" in err
        st = json.loads(status.read_text())
        assert 3 <= st["epochs_done"] < 12
    assert main(["run", "--profile", str(profile), "--results", str(results)]) == 0
    assert metrics_only(read(results / "tiny/epochs.csv")) == reference


def test_full_disk_gives_one_clear_message_and_keeps_results(profile, tmp_path, reference,
                                                             monkeypatch, capsys):
    results = tmp_path / "ref"
    before = (results / "tiny/epochs.csv").read_text()
    import bench.store as store

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "replace", no_space)
    capsys.readouterr()
    code = main(["run", "--profile", str(profile), "--results", str(results),
                 "--schedules", "constant"])
    err = capsys.readouterr().err
    assert code == 2
    assert "No space left on device" in err and "Traceback" not in err
    assert len(err.strip().splitlines()[-1]) < 300
    assert (results / "tiny/epochs.csv").read_text() == before


def test_disk_full_in_the_middle_of_a_run_keeps_finished_epochs(profile, tmp_path, reference,
                                                                monkeypatch, capsys):
    import bench.store as store

    results = tmp_path / "mid"
    real_replace = store.os.replace
    writes = {"records": 0}

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith("records.csv"):
            writes["records"] += 1
            if writes["records"] > 4:  # the disk fills up after four epochs
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(store.os, "replace", replace)
    code = main(["run", "--profile", str(profile), "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    run = results / "tiny/runs/plateau/seed0"
    assert len(read(run / "records.csv")) == 4  # what was written is intact
    monkeypatch.setattr(store.os, "replace", real_replace)
    assert main(["run", "--profile", str(profile), "--results", str(results)]) == 0
    assert metrics_only(read(results / "tiny/epochs.csv")) == reference


def test_unwritable_results_folder(profile, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["run", "--profile", str(profile), "--results", str(blocker / "results")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot" in err and "Traceback" not in err


@pytest.mark.slow
def test_sigterm_to_the_driver_alone_stops_worker_processes(long_profile, tmp_path,
                                                           long_reference):
    profile, reference = long_profile, long_reference
    results = tmp_path / "term"
    status = results / "tiny/runs/plateau/seed0/status.json"
    proc = start(command(profile, results, "--jobs", "2"))
    wait_for_epochs(status, 2, proc)
    proc.send_signal(signal.SIGTERM)  # as a cluster does on pre-emption; workers get nothing
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped by SIGTERM" in err and "Ctrl-C;" not in err
    assert json.loads(status.read_text())["epochs_done"] < 12
    assert main(["run", "--profile", str(profile), "--results", str(results)]) == 0
    assert metrics_only(read(results / "tiny/epochs.csv")) == reference

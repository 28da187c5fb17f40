"""Results you can hand to someone else: nothing read back executes code, damaged or edited
files are never reused, derived tables are rebuilt, closed pipes, hostile names and empty
experiments end cleanly."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.store import RunDir, atomic_write_bytes, parse_records, parse_status, sha256_bytes

TINY = """
description: tiny trust profile
dataset: {name: synthetic-la, options: {nodes: 12, days: 3, seed: 0}}
model: {name: stid, options: {embed_dim: 8, node_dim: 4, tod_dim: 4, dow_dim: 4, num_layers: 1}}
train: {batch_size: 64}
schedules: plateau
budgets: [3]
seeds: [0, 1]
device: cpu
threads: 1
"""

REPO = Path(__file__).resolve().parents[1]
RUN = "tiny/runs/plateau/seed0"


class Marker:
    """A pickle payload: unpickling it runs ``touch <path>`` (it must never be unpickled)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def read(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def metrics_only(rows):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("note: ")]


def run(profile: Path, results: Path, *extra) -> int:
    return main(["run", "--profile", str(profile), "--results", str(results), *extra])


def vouch(run_dir: Path, name: str) -> None:
    """Record the file's current checksum in status.json, as a forger who knows the format
    would: only the type checks and the weights-only loader stand in the way then."""
    status = json.loads((run_dir / "status.json").read_text())
    status["files"][name] = sha256_bytes((run_dir / name).read_bytes())
    (run_dir / "status.json").write_text(json.dumps(status))


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """A finished experiment (plateau x 3 epochs x seeds 0, 1); copy it before damaging."""
    root = tmp_path_factory.mktemp("trust")
    (root / "tiny.yaml").write_text(TINY)
    assert run(root / "tiny.yaml", root / "results") == 0
    return root


@pytest.fixture
def copy(clean, tmp_path) -> Path:
    shutil.copytree(clean / "results", tmp_path / "results")
    return tmp_path / "results"


@pytest.fixture
def profile(clean) -> Path:
    return clean / "tiny.yaml"


# -- nothing read back executes code --------------------------------------------------------
def test_every_builtin_schedules_state_loads_weights_only_and_resumes_exactly(tmp_path):
    from bench.build import build_run
    from bench.data import load_data
    from bench.profile import load_profile
    from bench.selection import schedules_from_file
    from schedules import BUILTIN

    (tmp_path / "p.yaml").write_text(TINY.replace("num_layers: 1", "num_layers: 1, "
                                                  "dropout: 0.1"))
    (tmp_path / "opt.yaml").write_text(
        "sgd_cos:\n  kind: warmup_cosine\n  lr: 0.05\n  optimizer: sgd\n  momentum: 0.9\n"
        "  nesterov: true\n  warmup_epochs: 1\n"
        "adamw_step:\n  kind: multistep\n  lr: 1.0e-3\n  optimizer: adamw\n  milestones: [1]\n")
    prof = load_profile(str(tmp_path / "p.yaml"))
    data = load_data(prof, torch.device("cpu"))
    registry = BUILTIN.copy()
    schedules_from_file(tmp_path / "opt.yaml", registry)
    for item in registry:
        straight = build_run(prof, item, 0, 8, data)
        straight.fit(1)
        saved = io.BytesIO()
        torch.save(straight.state_dict(), saved)
        straight.fit(2)
        resumed = build_run(prof, item, 0, 8, data)
        resumed.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=True))
        resumed.fit(2)
        assert metrics_only(r.row() for r in resumed.records) == \
            metrics_only(r.row() for r in straight.records), item.name


@pytest.mark.parametrize("form", ["pickle", "torch"])
@pytest.mark.parametrize("forged_checksum", [False, True])
def test_a_malicious_checkpoint_is_refused_and_never_executed(copy, profile, tmp_path, capsys,
                                                             form, forged_checksum):
    marker = tmp_path / "pwned"
    run_dir = copy / RUN
    payload = {"epoch": Marker(marker)}
    if form == "pickle":
        (run_dir / "checkpoint.pt").write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, run_dir / "checkpoint.pt")
    if forged_checksum:
        vouch(run_dir, "checkpoint.pt")
    straight = tmp_path / "straight"
    assert run(profile, straight, "--budgets", "3,5") == 0
    capsys.readouterr()
    assert run(profile, copy, "--budgets", "3,5") == 0  # extending resumes from checkpoints
    err = capsys.readouterr().err
    assert not marker.exists()
    said = notes(err)
    assert len(said) == 1 and "checkpoint.pt" in said[0] and "redone" in said[0], err
    assert ("weights-only" if forged_checksum else "checksum differs") in said[0]
    assert metrics_only(read(copy / "tiny/epochs.csv")) == \
        metrics_only(read(straight / "tiny/epochs.csv"))


@pytest.mark.parametrize("payload", [
    "pickle", "__import__('os').system('touch {marker}')", "=cmd|' /C touch {marker}'!A0"])
def test_a_malicious_records_file_is_refused(copy, profile, clean, tmp_path, capsys, payload):
    marker = tmp_path / "pwned"
    run_dir = copy / RUN
    if payload == "pickle":
        data = pickle.dumps(Marker(marker))
    else:
        lines = (run_dir / "records.csv").read_text().splitlines()
        cells = lines[1].split(",")
        cells[1] = payload.format(marker=marker)
        lines[1] = ",".join(cells)
        data = ("\n".join(lines) + "\n").encode()
    (run_dir / "records.csv").write_bytes(data)
    vouch(run_dir, "records.csv")
    # Reading the folder (report) names the file and leaves the run's cells out ...
    assert main(["report", "--results", str(copy), "--experiment", "tiny", "--out",
                 str(tmp_path / "rep")]) == 0
    err = capsys.readouterr().err
    assert "records.csv" in err and not marker.exists()
    summary = {(r["seed"]): r["status"] for r in read(copy / "tiny/summary.csv")}
    assert summary == {"0": "missing", "1": "finished"}
    # ... and the next run redoes it, with one note.
    assert run(profile, copy) == 0
    err = capsys.readouterr().err
    said = notes(err)
    assert len(said) == 1 and "records.csv" in said[0] and "redone" in said[0], err
    assert not marker.exists()
    assert metrics_only(read(copy / "tiny/epochs.csv")) == \
        metrics_only(read(clean / "results/tiny/epochs.csv"))


# -- the corruption matrix ------------------------------------------------------------------
def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(data[:40] + bytes(range(256)) + data[40:])
    elif how == "deleted":
        path.unlink()
    elif how == "non-numeric":
        if path.suffix == ".csv":
            lines = path.read_text().splitlines()
            header = lines[0].split(",")
            cells = lines[1].split(",")
            cells[header.index("test_mae")] = "oops"
            lines[1] = ",".join(cells)
            path.write_text("\n".join(lines) + "\n")
        else:
            doc = json.loads(data)
            key = "epochs_done" if "epochs_done" in doc else "parameters"
            doc[key] = "three"
            path.write_text(json.dumps(doc))


# A finished run without its checkpoint is complete (committed records carry none): only
# resuming or extending it would need one, so deleting it is not damage.
RUN_CASES = [(name, how) for name in ("records.csv", "status.json", "checkpoint.pt",
                                      "config.json")
             for how in ("truncate", "garbage", "non-numeric", "deleted")
             if not (name == "checkpoint.pt" and how in ("non-numeric", "deleted"))]


def test_a_finished_run_without_its_checkpoint_is_complete(copy, profile, capsys):
    (copy / RUN / "checkpoint.pt").unlink()
    capsys.readouterr()
    assert run(profile, copy) == 0
    err = capsys.readouterr().err
    assert notes(err) == [] and "2 skipped" in err, err


@pytest.mark.parametrize("name,how", RUN_CASES)
def test_a_damaged_run_file_is_redone_with_one_note(copy, profile, clean, capsys, name, how):
    _damage(copy / RUN / name, how)
    capsys.readouterr()
    assert run(profile, copy) == 0
    err = capsys.readouterr().err
    said = notes(err)
    assert len(said) == 1, err
    assert "runs/plateau/seed0" in said[0] and "redone" in said[0], err
    assert "finished  plateau/seed0: 3 epochs" in err  # retrained, not skipped
    assert "1 skipped" in err  # the intact run is reused
    assert metrics_only(read(copy / "tiny/epochs.csv")) == \
        metrics_only(read(clean / "results/tiny/epochs.csv"))
    assert run(profile, copy) == 0  # and now it is whole again
    assert notes(capsys.readouterr().err) == []


@pytest.mark.parametrize("command", ["report", "check"])
@pytest.mark.parametrize("name,how", [(name, how) for name in ("epochs.csv", "summary.csv")
                                      for how in ("truncate", "garbage", "non-numeric",
                                                  "deleted")])
def test_a_damaged_table_is_rebuilt_identical_with_one_note(copy, clean, tmp_path, capsys,
                                                            command, name, how):
    _damage(copy / "tiny" / name, how)
    capsys.readouterr()
    args = (["report", "--out", str(tmp_path / "rep")] if command == "report"
            else ["check", "--write-baseline", str(tmp_path / "base.csv")])
    assert main([*args, "--results", str(copy), "--experiment", "tiny"]) == 0
    said = notes(capsys.readouterr().err)
    assert len(said) == 1 and name in said[0] and "rebuilt" in said[0], said
    for table in ("epochs.csv", "summary.csv"):
        assert (copy / "tiny" / table).read_bytes() == \
            (clean / "results/tiny" / table).read_bytes()
    assert main([*args, "--results", str(copy), "--experiment", "tiny"]) == 0
    assert notes(capsys.readouterr().err) == []


def test_records_are_parsed_with_their_types(tmp_path):
    where = tmp_path / "records.csv"
    good = (b"epoch,lr,lr_end,train_loss,val_mae,test_mae,seconds\n"
            b"0,0.001,0.001,3.5,3.2,3.3,0.5\n1,0.001,0.001,3.1,3.0,3.1,0.5\n")
    rows = parse_records(good, where)
    assert rows[1] == {"epoch": 1, "lr": 0.001, "lr_end": 0.001, "train_loss": 3.1,
                       "val_mae": 3.0, "test_mae": 3.1, "seconds": 0.5}
    assert isinstance(rows[1]["epoch"], int)
    for bad, says in [(b"0,0.001,0.001,3.5,3.2,x,0.5", "line 2, column test_mae"),
                      (b"0,-0.001,0.001,3.5,3.2,3.3,0.5", "negative"),
                      (b"0,0.001,0.001,3.5,nan,3.3,0.5", "not finite"),
                      (b"0,0.001,0.001,3.5,3.2,1e999,0.5", "not finite"),
                      (b"0,0.001,0.001,3.5,3.2,3.3", "truncated"),
                      (b"0.5,0.001,0.001,3.5,3.2,3.3,0.5", "epoch number")]:
        with pytest.raises(ValueError, match=says):
            parse_records(good.split(b"\n")[0] + b"\n" + bad + b"\n", where)
    with pytest.raises(ValueError, match="epochs not 0, 1, 2"):
        parse_records(good.replace(b"\n1,", b"\n2,"), where)
    with pytest.raises(ValueError, match="unexpected column"):
        parse_records(b"epoch,lr,evil\n", where)
    assert parse_records(b"epoch,lr\n", where) == []  # diverged in its first epoch


def test_status_keys_are_checked_with_their_types(tmp_path):
    where = tmp_path / "status.json"
    ok = {"schema": 2, "status": "finished", "epochs_done": 3, "config_hash": "ab",
          "files": {"records.csv": "0" * 64}}
    assert parse_status(json.dumps(ok).encode(), where)["epochs_done"] == 3
    for change in ({"epochs_done": "3"}, {"epochs_done": -1}, {"status": "done"},
                   {"files": {"evil.py": "0" * 64}}, {"files": {"records.csv": "xyz"}},
                   {"epochs_done": True}):
        with pytest.raises(ValueError):
            parse_status(json.dumps({**ok, **change}).encode(), where)


# -- bounds before work, and reports that always render ---------------------------------------
@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "", "..", "a/b", "a\\b", " "])
def test_experiment_names_are_plain_names(profile, tmp_path, capsys, name):
    for command in (["run", "--profile", str(profile)], ["report"], ["check", "--baseline",
                                                                     "x.csv"]):
        code = main([*command, "--results", str(tmp_path / "r"), "--experiment", name])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "not a plain name" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("seeds", ["0-100000000", "0,1-5000", ",".join(["1"] * 1001)])
def test_seed_lists_and_ranges_are_capped_before_expansion(profile, tmp_path, capsys, seeds):
    assert run(profile, tmp_path / "r", "--seeds", seeds) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--seeds" in err


def test_out_pointing_at_a_file_is_one_line(copy, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out in (blocker, blocker / "sub"):
        assert main(["report", "--results", str(copy), "--experiment", "tiny", "--out",
                     str(out)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "not a folder" in err, err


def test_an_all_diverged_experiment_renders(tmp_path, capsys):
    (tmp_path / "wild.yaml").write_text("wild:\n  kind: constant\n  lr: 10.0\n")
    (tmp_path / "div.yaml").write_text(TINY.replace(
        "train: {batch_size: 64}",
        "train: {batch_size: 64, grad_clip: null, divergence_factor: 1.0001}"))
    assert run(tmp_path / "div.yaml", tmp_path / "r", "--schedule-file",
               str(tmp_path / "wild.yaml"), "--schedules", "wild") == 1  # none finished
    assert {r["status"] for r in read(tmp_path / "r/div/summary.csv")} == {"diverged"}
    capsys.readouterr()
    assert main(["report", "--results", str(tmp_path / "r"), "--experiment", "div", "--out",
                 str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep/div/report.md").read_text()
    assert text.startswith("# div: every run diverged") and "diverged at epoch 0" in text
    assert "Traceback" not in capsys.readouterr().err


def test_an_experiment_only_registered_by_a_shard_renders(profile, tmp_path, capsys):
    assert run(profile, tmp_path / "r", "--shard", "100/100") == 0
    assert main(["report", "--results", str(tmp_path / "r"), "--experiment", "tiny", "--out",
                 str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep/tiny/report.md").read_text()
    assert "no finished epoch" in text and "missing" in text


# -- the small ones -------------------------------------------------------------------------
def test_files_get_the_umasks_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.csv", b"x")
        assert stat.S_IMODE((tmp_path / "a.csv").stat().st_mode) == 0o644
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.csv", b"x")
        assert stat.S_IMODE((tmp_path / "b.csv").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_run_files_are_0644_under_the_usual_umask(clean):
    for path in (clean / "results").rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_a_damaged_run_outside_the_grid_is_named_once(copy, profile, capsys):
    records = copy / "tiny/runs/plateau/seed1/records.csv"
    records.write_text(records.read_text().replace("\n1,", "\n7,"))
    capsys.readouterr()
    # Three jobs of this invocation finish (each rebuilds the tables); seed 1 is not among
    # them but is in grid.json, so every rebuild meets it.
    assert run(profile, copy, "--seeds", "1", "--schedules", "plateau,constant,multistep") == 0
    said = [n for n in notes(capsys.readouterr().err) if "runs/" in n]
    assert len(said) == 1 and "seed1/records.csv" in said[0], said


def test_a_run_folder_deleted_while_training_is_marked_failed(profile, clean, tmp_path,
                                                              monkeypatch, capsys):
    from bench import job

    real = job.RunSession.save_epoch

    def save_then_delete(self, record, progress=None):
        real(self, record, progress)
        if self.job.key == "plateau/seed0" and self.trainer.epoch == 1:
            shutil.rmtree(self.run.root)

    monkeypatch.setattr(job.RunSession, "save_epoch", save_then_delete)
    assert run(profile, tmp_path / "r") == 1
    err = capsys.readouterr().err
    said = notes(err)
    assert len(said) == 1 and "deleted or replaced while the run trained" in said[0], err
    assert "failed    plateau/seed0" in err
    assert not (tmp_path / "r" / RUN).exists()  # not recreated without config.json and lock
    monkeypatch.undo()
    assert run(profile, tmp_path / "r") == 0
    assert metrics_only(read(tmp_path / "r/tiny/epochs.csv")) == \
        metrics_only(read(clean / "results/tiny/epochs.csv"))


def test_a_baseline_with_spaces_after_commas_is_read(copy, tmp_path, capsys):
    base = tmp_path / "base.csv"
    assert main(["check", "--results", str(copy), "--experiment", "tiny",
                 "--write-baseline", str(base)]) == 0
    base.write_text(base.read_text().replace(",", ", "))
    assert main(["check", "--results", str(copy), "--experiment", "tiny",
                 "--baseline", str(base)]) == 0


def test_cells_absent_from_the_baseline_are_listed_and_pass(copy, profile, tmp_path, capsys):
    base = tmp_path / "base.csv"
    assert main(["check", "--results", str(copy), "--experiment", "tiny",
                 "--write-baseline", str(base)]) == 0
    assert run(profile, copy, "--schedules", "plateau,constant") == 0
    capsys.readouterr()
    assert main(["check", "--results", str(copy), "--experiment", "tiny",
                 "--baseline", str(base)]) == 0
    captured = capsys.readouterr()
    assert "| constant | 3 |" in captured.out and "not in baseline" in captured.out
    assert "1 result cell(s) not in baseline" in captured.err


def kill_before_status(copy: Path) -> bytes:
    """Leave the run as if killed after writing epoch 3's checkpoint, before status.json said
    so: the checkpoint matches only the pending checksum. Returns the checkpoint's bytes."""
    status = RunDir(copy / RUN).read_status()
    newer = (copy / RUN / "checkpoint.pt").read_bytes()
    forged = {**status, "status": "running", "epochs_done": 2, "target_epochs": 3,
              "files": {**status["files"], "checkpoint.pt": "0" * 64},
              "pending": {"checkpoint.pt": sha256_bytes(newer)}}
    (copy / RUN / "status.json").write_text(json.dumps(forged))
    return newer


def test_a_kill_between_a_file_and_its_status_is_not_damage(copy, profile, capsys):
    """The pending checksums: a checkpoint newer than status.json is resumed without a note."""
    kill_before_status(copy)
    capsys.readouterr()
    assert run(profile, copy) == 0
    err = capsys.readouterr().err
    assert notes(err) == [] and "finished  plateau/seed0: 3 epochs" in err


def test_a_status_without_checksums_vouches_for_nothing(copy, profile, capsys):
    """A status in the format from before checksums (schema 1) is not trusted: redone."""
    status = json.loads((copy / RUN / "status.json").read_text())
    status["schema"] = 1
    del status["files"]
    (copy / RUN / "status.json").write_text(json.dumps(status))
    capsys.readouterr()
    assert run(profile, copy) == 0
    err = capsys.readouterr().err
    assert len(notes(err)) == 1 and "cannot be verified" in notes(err)[0]
    assert "finished  plateau/seed0: 3 epochs" in err


def test_a_resumed_pending_checkpoint_stays_vouched_for(copy, profile):
    """After resuming from a checkpoint that matched only the pending checksum, the status
    written at the restart must vouch for that checkpoint (a second kill must not turn it into
    damage)."""
    newer = kill_before_status(copy)
    again = RunDir(copy / RUN)
    again.adopt(again.read_status())
    assert again.sums["checkpoint.pt"] == sha256_bytes(newer)


# -- process level --------------------------------------------------------------------------
def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


@pytest.mark.slow
def test_a_closed_pipe_does_not_stop_the_grid(profile, tmp_path):
    """``python -m bench run ... 2>&1 | head -1``: the reader goes after one line."""
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "--profile", str(profile),
                             "--results", str(tmp_path / "r"), "--schedules",
                             "plateau,constant,multistep"],
                            cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0
    summary = read(tmp_path / "r/tiny/summary.csv")
    assert len(summary) == 6 and {r["status"] for r in summary} == {"finished"}


@pytest.mark.slow
def test_a_closed_stdout_leaves_no_exception_at_exit(copy, tmp_path):
    base = tmp_path / "base.csv"
    assert main(["check", "--results", str(copy), "--experiment", "tiny",
                 "--write-baseline", str(base)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "bench", "check", "--results", str(copy),
                             "--experiment", "tiny", "--baseline", str(base)],
                            cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the table on stdout meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0
    assert "Exception ignored" not in err and "BrokenPipe" not in err, err

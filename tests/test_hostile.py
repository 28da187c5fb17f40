"""A results folder from a stranger: every command against every hostile shape.

Each case damages a copy of one small finished experiment the way an attacker (or a broken
tarball) would, then runs ``report``, ``check``, ``compare`` and ``run`` against it and
asserts: no file outside the results root changed (a sentinel tree is hashed before and
after), no exception escapes (no traceback), no command hangs (an alarm), the exit code is
the one the rules give, what was refused is named in a note, and no raw control character
reaches the terminal. After ``run``, every run folder is a real folder holding the run its
path names. The few cases that need a real process (a FIFO, a device, an alias bomb) are
``slow``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.cli import main
from bench.store import RunDir

PROFILE = """
description: tiny hostile-folder profile
dataset: {name: synthetic-la, options: {nodes: 12, days: 3, seed: 0}}
model: {name: stid, options: {embed_dim: 8, node_dim: 4, tod_dim: 4, dow_dim: 4, num_layers: 1}}
train: {batch_size: 64}
schedules: constant,linear_decay
budgets: [2]
seeds: [0, 1]
device: cpu
threads: 1
"""
RUNS = ("constant/seed0", "constant/seed1", "linear_decay/e2-seed0", "linear_decay/e2-seed1")
COMMANDS = ("report", "check", "compare", "run")  # readers first: run repairs the folder
HANG = 60  # seconds any one command may take before it counts as hung
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One finished experiment ``tiny`` (constant and linear_decay, 2 epochs, seeds 0 and
    1), a clean copy ``tiny2`` for ``compare``, and a baseline written from it."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "tiny.yaml").write_text(PROFILE)
    assert main(["run", "--profile", str(root / "tiny.yaml"), "--results",
                 str(root / "results"), "--experiment", "tiny"]) == 0
    shutil.copytree(root / "results/tiny", root / "results/tiny2")
    assert main(["check", "--results", str(root / "results"), "--experiment", "tiny",
                 "--write-baseline", str(root / "base.csv")]) == 0
    return root


@dataclass
class World:
    """A fresh copy of the built experiment and, beside the results root, the sentinel
    tree: files an attacker's links point at, which must never change."""

    root: Path

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def exp(self) -> Path:
        return self.results / "tiny"

    @property
    def run(self) -> Path:
        return self.exp / "runs/constant/seed0"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    @property
    def profile(self) -> Path:
        return self.root / "tiny.yaml"

    @property
    def baseline(self) -> Path:
        return self.root / "base.csv"

    def args(self, command: str) -> list[str]:
        results, out = str(self.results), str(self.root / "out")
        return {"report": ["report", "--results", results, "--experiment", "tiny",
                           "--out", out],
                "check": ["check", "--results", results, "--experiment", "tiny",
                          "--baseline", str(self.baseline)],
                "compare": ["compare", "tiny", "tiny2", "--results", results, "--out", out,
                            "--name", "cmp"],
                "run": ["run", "--profile", str(self.profile), "--results", results,
                        "--experiment", "tiny"]}[command]


@pytest.fixture
def world(built, tmp_path) -> World:
    shutil.copytree(built / "results", tmp_path / "results", symlinks=True)
    for name in ("tiny.yaml", "base.csv"):
        shutil.copy(built / name, tmp_path / name)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("a user's file: never written, never truncated\n")
    (outside / "notes").mkdir()
    (outside / "notes/keep.md").write_text("# mine\n")
    return World(tmp_path)


def sentinel(w: World) -> dict[str, str]:
    """Every entry outside the results root (and the user's own input files) by kind and
    content: a file written, created, truncated or deleted there changes it."""
    seen = {}
    for base in (w.outside, w.profile, w.baseline):
        paths = [base] if not base.is_dir() else sorted(base.rglob("*"))
        for path in paths:
            if path.is_symlink():
                seen[str(path)] = f"link {os.readlink(path)}"
            elif path.is_dir():
                seen[str(path)] = "folder"
            elif path.is_file():
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[str(path)] = "special"
    return seen


class Hung(Exception):
    pass


def invoke(args: list[str], capsys) -> tuple[int, str]:
    """``main(args)`` under an alarm; returns the exit code and everything printed. An
    exception escaping ``main`` fails the test with its traceback."""
    def ring(signum, frame):
        raise Hung(f"{args[0]} took more than {HANG} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(HANG)
    try:
        code = main(args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# -- the damage --------------------------------------------------------------------------
def _link(path: Path, target: Path | str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    os.symlink(target, path)


def _move_out_and_link(path: Path, there: Path) -> None:
    there.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(there))
    os.symlink(there, path)


def _edit_json(path: Path, **changes) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def _add_schedule(w: World, name: str) -> None:
    grid = json.loads((w.exp / "grid.json").read_text())
    grid["schedules"][name] = {**grid["schedules"]["constant"], "summary": "mine"}
    grid["order"].append(name)
    grid["cells"].append([name, 2, 0])
    (w.exp / "grid.json").write_text(json.dumps(grid))


def _swap(w: World, keep_hash: bool) -> None:
    """linear_decay's seed-0 folder copied whole over constant's, optionally with
    constant's config_hash written into the copied status.json."""
    own = json.loads((w.run / "status.json").read_text())["config_hash"]
    shutil.rmtree(w.run)
    shutil.copytree(w.exp / "runs/linear_decay/e2-seed0", w.run)
    (w.run / "lock").unlink(missing_ok=True)
    if keep_hash:
        _edit_json(w.run / "status.json", config_hash=own)


def _forge_tuning(w: World) -> None:
    """A tuning record saying constant was tuned and chose linear_decay's runs, with
    numbers that match linear_decay's records: dropped into both experiments."""
    import csv

    with open(w.exp / "summary.csv") as fh:
        rows = [r for r in csv.DictReader(fh)
                if r["schedule"] == "linear_decay" and r["seed"] == "1"]
    val = float(rows[0]["val_mae"])
    forged = {"space": {"lr": [0.001], "weight_decay": []}, "tuning_seeds": [1],
              "eval_seeds": [0],
              "schedules": {"constant": {"2": {"chosen": "linear_decay",
                                               "val_mae": {"linear_decay": val}}}},
              "settings": {"linear_decay": {"lr": 0.001, "weight_decay": 0.0005}}}
    for name in ("tiny", "tiny2"):
        (w.results / name / "tuning.json").write_text(json.dumps(forged))


def _baseline(w: World, **row) -> None:
    lines = w.baseline.read_text().splitlines()
    header = lines[0].split(",")
    for i, line in enumerate(lines[1:], 1):
        cells = line.split(",")
        if cells[0] == "constant":
            for key, value in row.items():
                cells[header.index(key)] = value
            lines[i] = ",".join(cells)
    w.baseline.write_text("\n".join(lines) + "\n")


def _edit_baselines(w: World) -> None:
    """Every historical-average MAE made ten times worse: a well-formed file whose numbers
    would change the report's verdict against the baselines."""
    lines = (w.exp / "baselines.csv").read_text().splitlines()
    header = lines[0].split(",")
    for i, line in enumerate(lines[1:], 1):
        cells = line.split(",")
        if cells[0] == "historical_average":
            cells[header.index("mae")] = str(10 * float(cells[header.index("mae")]))
            lines[i] = ",".join(cells)
    (w.exp / "baselines.csv").write_text("\n".join(lines) + "\n")


def _deep(path: Path) -> None:
    path.unlink()
    path.write_text("[" * 100_000 + "]" * 100_000)


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _dir_as_file(w: World) -> None:
    (w.run / "status.json").unlink()
    (w.run / "status.json").mkdir()
    (w.run / "status.json/inner").write_text("{}")
    (w.exp / ".junk.tmp").mkdir()
    (w.run / ".half.tmp").mkdir()


def _sparse(path: Path, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(size)  # sparse: no disk used


BOMB = "".join(f"{k}: &{k} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
               for p, k in zip(["", *"abcdefgh"], "abcdefghi"))


@dataclass
class Case:
    damage: Callable[[World], None]
    codes: dict[str, int]          # exit code per command
    said: dict[str, str] = field(default_factory=dict)  # a note per command must hold this
    args: dict[str, list[str]] = field(default_factory=dict)  # extra arguments per command


READS_SKIP_CONSTANT = {"report": 0, "check": 1, "compare": 0, "run": 0}  # cell missing, redone
ALL_FINE = {c: 0 for c in COMMANDS}
ALL_BAD = {c: 2 for c in COMMANDS}
RUN_ONLY_BAD = {**ALL_FINE, "run": 2}
CHECK_ONLY_BAD = {**ALL_FINE, "check": 2}
SEED0 = "constant/seed0"

CASES = {
    "experiment lock links to a user's file": Case(
        lambda w: _link(w.exp / ".lock", w.outside / "victim.txt"), ALL_FINE,
        {c: ".lock" for c in COMMANDS}),
    "experiment lock is a dangling link": Case(
        lambda w: _link(w.exp / ".lock", w.outside / "created.txt"), ALL_FINE,
        {c: ".lock" for c in COMMANDS}),
    "run lock links to a user's file": Case(
        lambda w: _link(w.run / "lock", w.outside / "victim.txt"), ALL_FINE,
        {"run": "seed0/lock"}),
    "run folder links to a folder outside": Case(
        lambda w: _move_out_and_link(w.run, w.outside / "elsewhere/seed0"),
        READS_SKIP_CONSTANT, {c: SEED0 for c in COMMANDS}),
    "runs folder links outside": Case(
        lambda w: _move_out_and_link(w.exp / "runs", w.outside / "runs"),
        {"report": 0, "check": 1, "compare": 0, "run": 0},
        {"report": "runs", "check": "compared nothing", "run": "runs"}),
    "run file links to a file outside": Case(
        lambda w: _move_out_and_link(w.run / "records.csv", w.outside / "records.csv"),
        READS_SKIP_CONSTANT, {c: SEED0 for c in COMMANDS}),
    "run status is a dangling link": Case(
        lambda w: _link(w.run / "status.json", w.outside / "nothing.json"),
        READS_SKIP_CONSTANT, {c: SEED0 for c in COMMANDS}),
    "run records and a table are FIFOs": Case(
        lambda w: (_fifo(w.run / "records.csv"), _fifo(w.exp / "summary.csv")),
        READS_SKIP_CONSTANT, {c: SEED0 for c in COMMANDS}),
    "run status links to /dev/zero": Case(
        lambda w: _link(w.run / "status.json", "/dev/zero"),
        READS_SKIP_CONSTANT, {c: SEED0 for c in COMMANDS}),
    "user files are /dev/zero": Case(
        lambda w: None, {**ALL_FINE, "check": 2, "run": 2},
        {"check": "/dev/zero", "run": "/dev/zero"},
        {"check": ["--baseline", "/dev/zero"], "run": ["--schedule-file", "/dev/zero"]}),
    "folders where files belong": Case(
        _dir_as_file, READS_SKIP_CONSTANT, {c: SEED0 for c in COMMANDS}),
    "run records far over the size cap": Case(
        lambda w: _sparse(w.run / "records.csv", 300 << 20),
        READS_SKIP_CONSTANT, {c: SEED0 for c in COMMANDS}),
    "deep JSON in a run status": Case(
        lambda w: _deep(w.run / "status.json"), READS_SKIP_CONSTANT,
        {c: SEED0 for c in COMMANDS}),
    "deep JSON in grid.json": Case(
        lambda w: _deep(w.exp / "grid.json"), ALL_BAD, {c: "grid.json" for c in COMMANDS}),
    "deep JSON in experiment.json": Case(
        lambda w: _deep(w.exp / "experiment.json"), ALL_BAD,
        {c: "experiment.json" for c in COMMANDS}),
    "path-like schedule name in grid.json": Case(
        lambda w: _add_schedule(w, "../../../outside/notes"), ALL_BAD,
        {c: "not a plain name" for c in COMMANDS}),
    "absolute schedule name in grid.json": Case(
        lambda w: _add_schedule(w, str(w.outside)), ALL_BAD,
        {c: "not a plain name" for c in COMMANDS}),
    "control characters in a name in grid.json": Case(
        lambda w: _add_schedule(w, "evil\r\x1b[2Jname"), ALL_BAD,
        {c: "not a plain name" for c in COMMANDS}),
    "formula as a name in grid.json": Case(
        lambda w: _add_schedule(w, "=HYPERLINK(1)"), ALL_BAD,
        {c: "not a plain name" for c in COMMANDS}),
    "run folder swapped for another run's": Case(
        lambda w: _swap(w, keep_hash=False), READS_SKIP_CONSTANT,
        {"report": "foreign", "check": "foreign", "compare": "foreign", "run": SEED0}),
    "swapped run folder with the copied config_hash": Case(
        lambda w: _swap(w, keep_hash=True), READS_SKIP_CONSTANT,
        {c: "foreign" for c in COMMANDS}),
    "forged tuning.json in both experiments": Case(
        _forge_tuning, ALL_FINE, {c: "tuning.json" for c in ("report", "check", "compare")}),
    "status forked_from holds escape sequences": Case(
        lambda w: _edit_json(w.run / "status.json", forked_from="\x1b[2J" * 200_000),
        READS_SKIP_CONSTANT, {c: SEED0 for c in COMMANDS}),
    "edited baselines.csv": Case(
        _edit_baselines, ALL_FINE, {"report": "baselines.csv",
                                    "run": "baselines.csv recomputed"}),
    "experiment folder links outside": Case(
        lambda w: _move_out_and_link(w.exp, w.outside / "tiny"), ALL_BAD,
        {c: "symbolic link" for c in COMMANDS}),
    "baseline MAE is inf": Case(
        lambda w: _baseline(w, test_mae="inf"), CHECK_ONLY_BAD, {"check": "test_mae"}),
    "baseline spread is inf": Case(
        lambda w: _baseline(w, test_mae_std="inf"), CHECK_ONLY_BAD,
        {"check": "test_mae_std"}),
    "baseline spread is 1e300": Case(
        lambda w: _baseline(w, test_mae_std="1e300"), CHECK_ONLY_BAD,
        {"check": "test_mae_std"}),
    "duplicate key in the profile": Case(
        lambda w: w.profile.write_text(PROFILE + "budgets: [3]\n"), RUN_ONLY_BAD,
        {"run": "duplicate key 'budgets'"}),
    "duplicate key in a schedule file": Case(
        lambda w: (w.root / "mine.yaml").write_text(
            "mine:\n  kind: constant\n  lr: 0.001\n  lr: 0.1\n"),
        RUN_ONLY_BAD, {"run": "duplicate key 'lr' at line 3 and line 4"},
        {"run": ["--schedule-file", "mine.yaml"]}),
    "alias bomb as the profile": Case(
        lambda w: w.profile.write_text(BOMB), RUN_ONLY_BAD, {"run": "aliases"}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_command_survives_a_hostile_folder(name, world, capsys, monkeypatch):
    case = CASES[name]
    w = world
    monkeypatch.chdir(w.root)  # relative arguments (a schedule file) resolve here
    case.damage(w)
    before = sentinel(w)
    capsys.readouterr()
    for command in COMMANDS:
        code, text = invoke(w.args(command) + case.args.get(command, []), capsys)
        assert "Traceback" not in text, text
        assert "\x1b" not in text and "\r" not in text, f"{command}: raw control characters"
        assert code == case.codes[command], f"{command}: exit {code}\n{text}"
        if command in case.said:
            assert case.said[command] in text, f"{command}: nothing said about it\n{text}"
    assert sentinel(w) == before, "a file outside the results root changed"
    if case.codes["run"] == 0:
        for key in RUNS:  # repaired: real folders, each holding the run its path names
            run = RunDir(w.exp / "runs" / key, base=w.exp)
            assert run.root.is_dir() and not run.root.is_symlink(), key
            status = run.read_status()
            assert status["status"] == "finished", key
            assert run.verify(status) is None and run.binding_problem(status) is None, key


def test_a_swapped_folder_is_redone_not_skipped(world, capsys):
    """With the copied config_hash, bench run used to skip the foreign folder as finished."""
    _swap(world, keep_hash=True)
    code, text = invoke(world.args("run"), capsys)
    assert code == 0 and "finished  constant/seed0" in text and "foreign" in text, text
    config = json.loads((world.run / "config.json").read_text())["config"]
    assert config["schedule"]["name"] == "constant" and config["epochs"] is None


def test_a_forged_tuning_record_is_not_used(world, capsys):
    _forge_tuning(world)
    code, text = invoke(world.args("compare"), capsys)
    assert code == 0 and "not used" in text, text
    compare = (world.root / "out/cmp/compare.md").read_text()
    assert "**Own settings.**" in compare and "tuned" not in compare.split("\n")[4]
    code, text = invoke(world.args("report"), capsys)
    assert "Each schedule tuned" not in (world.root / "out/tiny/report.md").read_text()


def test_a_swapped_folder_fails_the_gate(world, capsys):
    """The regression check no longer reads another schedule's records as constant's."""
    _swap(world, keep_hash=True)
    code, text = invoke(world.args("check"), capsys)
    assert code == 1 and "constant @ 2 epochs: no finished result" in text, text


def test_text_from_files_is_escaped_in_the_report(world, capsys):
    grid = json.loads((world.exp / "grid.json").read_text())
    grid["schedules"]["constant"]["summary"] = (
        "![x](https://example.com/t.png) <script>alert(1)</script> | # not a heading "
        "\x1b[31m" + "long " * 200)
    (world.exp / "grid.json").write_text(json.dumps(grid))
    record = json.loads((world.exp / "experiment.json").read_text())
    record["data"]["units"] = "<iframe src=x></iframe>"
    (world.exp / "experiment.json").write_text(json.dumps(record))
    code, text = invoke(world.args("report"), capsys)
    assert code == 0, text
    report = (world.root / "out/tiny/report.md").read_text()
    for raw in ("<script>", "<iframe", "![x](", "\x1b", "| # not"):
        assert raw not in report, raw
    assert "&lt;script&gt;" in report and "![x\\](" in report and "more characters)" in report
    row = next(line for line in report.splitlines() if line.startswith("| `constant` | constant |"))
    assert row.count(" | ") == 5  # the summary's pipe did not add a cell


def test_unusable_out_and_names_are_one_line(world, capsys):
    (world.root / "afile").write_text("x")
    long = "x" * 300
    for args in (["report", "--results", str(world.results), "--experiment", "tiny",
                  "--out", str(world.root / "afile")],
                 ["compare", "tiny", "tiny2", "--results", str(world.results),
                  "--out", str(world.root / "afile")],
                 ["report", "--results", str(world.results), "--experiment", long],
                 ["check", "--results", str(world.results), "--experiment", long,
                  "--baseline", str(world.baseline)],
                 ["compare", "tiny", "tiny2", "--results", str(world.results), "--name", long],
                 ["report", "--results", str(world.results), "--experiment", "tiny",
                  "--out", str(world.root / long)]):
        code, text = invoke(args, capsys)
        assert code == 2 and text.count("\n") == 1 and text.startswith("error:"), (args, text)


def test_regenerate_line_quotes_paths(world, capsys, monkeypatch):
    spaced = world.root / "my results"
    world.results.rename(spaced)
    monkeypatch.chdir(world.root)
    assert invoke(["report", "--results", "my results", "--experiment", "tiny", "--out",
                   "my reports"], capsys)[0] == 0
    report = (world.root / "my reports/tiny/report.md").read_text()
    assert "--results 'my results' --experiment tiny --out 'my reports'" in report


def test_a_large_grid_is_tabulated_in_linear_time(tmp_path, monkeypatch):
    """20,000 cells (1,000 schedules x 20 seeds), none trained: reading them back used to
    scan every cell once per cell (27 s); now the cells are walked a fixed number of times."""
    import bench.tables as tables

    class Cells(list):
        walks = 0

        def __iter__(self):
            Cells.walks += 1
            return super().__iter__()

    exp = tmp_path / "big"
    exp.mkdir()
    names = [f"s{i}" for i in range(1000)]
    grid = {"schedules": {n: {"budget_dependent": False} for n in names}, "order": names,
            "cells": [[n, 5, seed] for n in names for seed in range(20)]}
    (exp / "grid.json").write_text(json.dumps(grid))
    read = tables.read_grid
    monkeypatch.setattr(tables, "read_grid",
                        lambda path: {**read(path), "cells": Cells(read(path)["cells"])})
    start = time.perf_counter()
    _, summary, _ = tables.collect(exp)
    assert len(summary) == 20_000 and Cells.walks <= 3
    assert time.perf_counter() - start < 60


# -- in a real process: hangs, devices and memory -----------------------------------------
def _bench(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_in_a_process_fifos_devices_and_bombs_end_in_one_line(world):
    w = world
    _fifo(w.run / "records.csv")
    _fifo(w.exp / "epochs.csv")
    _link(w.exp / ".lock", w.outside / "victim.txt")
    os.mkfifo(w.root / "fifo.csv")
    (w.root / "bomb.yaml").write_text(BOMB)
    before = sentinel(w)
    cases = [(w.args("report"), 0), (w.args("check"), 1),
             (["check", "--results", str(w.results), "--experiment", "tiny", "--baseline",
               str(w.root / "fifo.csv")], 2),
             (["check", "--results", str(w.results), "--experiment", "tiny", "--baseline",
               "/dev/zero"], 2),
             (["run", "--profile", str(w.root / "bomb.yaml"), "--results", str(w.results)], 2),
             (w.args("run"), 0)]
    for args, want in cases:
        done = _bench(args, w.root)
        assert "Traceback" not in done.stderr and done.returncode == want, (args, done.stderr)
    assert sentinel(w) == before


# -- data files: shape before size ----------------------------------------------------------
def _npy_declaring(shape: tuple[int, ...]) -> bytes:
    """An .npy header declaring ``shape`` of float32, followed by a few bytes of data."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + b"\0" * 64


@pytest.mark.parametrize("shape", ["sparse 2 GB series.csv", "series.csv is a FIFO",
                                   "npz member declares 10^12 values",
                                   "dataset.yaml repeats a key", "lines wider than the header"])
def test_hostile_data_files_end_in_one_data_error(tmp_path, shape):
    import zipfile

    from stforecast.datasets import DataError
    from stforecast.datasets.loaders import load_path

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "adj.npy").write_bytes(_npy_declaring((2, 2)))
    series = folder / "series.csv"
    if shape == "sparse 2 GB series.csv":
        with open(series, "wb") as fh:
            fh.truncate(2 << 30)
    elif shape == "series.csv is a FIFO":
        os.mkfifo(series)
    elif shape == "lines wider than the header":
        series.write_text("a,b\n" + "1," * 10_000 + "1\n")
    elif shape == "dataset.yaml repeats a key":
        series.write_text("a,b\n1,2\n")
        (folder / "dataset.yaml").write_text("series: series.csv\nunits: mph\nunits: km/h\n")
    else:
        series = folder / "series.npz"
        with zipfile.ZipFile(series, "w") as zf:
            zf.writestr("data.npy", _npy_declaring((10**6, 10**6)))
    old = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(Hung("load")))
    signal.alarm(HANG)
    try:
        with pytest.raises(DataError) as info:
            load_path(folder if shape == "dataset.yaml repeats a key" else series,
                      adjacency=folder / "adj.npy")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    message = str(info.value)
    named = "dataset.yaml" if shape == "dataset.yaml repeats a key" else series.name
    assert "\n" not in message and named in message, message


# -- the pieces ---------------------------------------------------------------------------
def test_escape_functions_leave_honest_text_and_defuse_the_rest():
    from bench.escape import csv_cell, md_code, md_text, terminal

    honest = "lr=0.001, milestones=[30, 60, 90], x86_64, warmup_cosine (β=0.9/0.999)"
    assert md_text(honest) == honest and md_code(honest) == f"`{honest}`"
    assert terminal(honest) == honest
    hostile = "![i](http://x/i.png) <img src=x> &#60; | # h *b* `c` \x1b[2J\r\n\u202e"
    text = md_text(hostile)
    for raw in ("](", "<img", "&#60;", " | ", " # ", "*b*", "`c`", "\x1b", "\r", "\n",
                "\u202e"):
        assert raw not in text.replace("\\](", "").replace("\\|", "").replace("\\#", "")
    assert "\\x1b" in terminal(hostile) and "\x1b" not in terminal(hostile)
    code = md_code("a`b|c")
    assert code.startswith("``") and "\\|" in code and "a`b" in code
    assert terminal("x" * 500).endswith("(300 more characters)")
    assert [csv_cell(v) for v in ("=1+2", "+x", "-0.5", "@a", "plain", 3.0)] == \
        ["'=1+2", "'+x", "-0.5", "'@a", "plain", 3.0]


def test_the_reader_refuses_links_specials_and_oversized_files(tmp_path):
    from bench.safe_files import LIMITS, Refused, parse_json, read_bytes

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub/ok.json").write_text("{}")
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", root / "link")
    os.symlink(tmp_path, root / "dirlink")
    os.mkfifo(root / "fifo")
    with open(root / "big", "wb") as fh:
        fh.truncate(LIMITS["status"] + 1)
    assert read_bytes(root / "sub/ok.json", "status", root) == b"{}"
    for name, why in (("link", "symbolic link"), ("dirlink/secret", "symbolic link"),
                      ("fifo", "FIFO"), ("sub", "folder"), ("big", "limit"),
                      ("../secret", "not a plain path")):
        with pytest.raises(Refused, match=why):
            read_bytes(root / name, "status", root)
    with pytest.raises(FileNotFoundError):
        read_bytes(root / "absent", "status", root)
    with pytest.raises(ValueError, match="nested"):
        parse_json("[" * 65 + "]" * 65, "x.json")

"""Committed records (``studies/``): results folders kept without checkpoints, from which every
committed report is rendered again, byte for byte, and from which a study resumes."""

import re
import shlex
import shutil
from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY = """
dataset: {name: synthetic-la, options: {nodes: 8, days: 3, seed: 0}}
model: {name: stid, options: {embed_dim: 8, node_dim: 4, tod_dim: 4, dow_dim: 4, num_layers: 1}}
schedules: plateau,linear_decay
budgets: [4]
seeds: [0, 1]
device: cpu
jobs: 1
threads: 1
"""

# What a committed copy leaves out (.gitignore): only training needs these.
TRAINING_ONLY = ("checkpoint.pt", "lock", ".lock", "epochs.csv", "summary.csv")


def strip(exp: Path) -> None:
    for path in list(exp.rglob("*")):
        if path.name in TRAINING_ONLY or path.name.endswith(".tmp"):
            path.unlink()


def snapshot(exp: Path) -> dict[str, bytes]:
    return {str(p.relative_to(exp)): p.read_bytes() for p in sorted(exp.rglob("*"))
            if p.is_file() and p.name not in TRAINING_ONLY}


def test_records_without_checkpoints_report_alike_and_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(TINY)
    assert main(["run", "--profile", "tiny.yaml", "--results", "r"]) == 0
    assert main(["report", "--results", "r", "--experiment", "tiny", "--out", "out"]) == 0
    full = Path("out/tiny/report.md").read_bytes()
    exp = Path("r/tiny")
    strip(exp)
    assert not list(exp.rglob("checkpoint.pt"))
    kept = snapshot(exp)
    capsys.readouterr()
    assert main(["report", "--results", "r", "--experiment", "tiny", "--out", "out"]) == 0
    notes = [x for x in capsys.readouterr().err.splitlines() if x.startswith("note:")]
    assert notes == ["note: epochs.csv was missing; rebuilt",   # derived: never committed
                     "note: summary.csv was missing; rebuilt"]  # and nothing found damaged
    assert Path("out/tiny/report.md").read_bytes() == full
    # `bench run` takes every finished run as done: nothing is trained, nothing rewritten.
    assert main(["run", "--profile", "tiny.yaml", "--results", "r"]) == 0
    err = capsys.readouterr().err
    assert "redone" not in err and "finished " not in err
    assert snapshot(exp) == kept
    # A longer budget cannot extend a run without its weights: it is trained again from
    # epoch 0, and its first epochs reproduce the committed ones exactly (CPU, one thread).
    Path("longer.yaml").write_text(TINY.replace("budgets: [4]", "budgets: [4, 6]"))
    assert main(["run", "--profile", "longer.yaml", "--results", "r", "--experiment",
                 "tiny"]) == 0
    old = kept["runs/plateau/seed0/records.csv"].decode().splitlines()
    new = (exp / "runs/plateau/seed0/records.csv").read_text().splitlines()
    assert len(new) == 1 + 6 and len(old) == 1 + 4

    def metrics(line: str) -> list[str]:  # every column but the three timings
        return line.split(",")[:-3]

    assert [metrics(x) for x in new[:5]] == [metrics(x) for x in old]


def committed_reports() -> list[Path]:
    """Every rendered report under ``reports/`` (``bench perf`` measurements excepted: they
    are timings of this machine, not renderings of records)."""
    return sorted(p for p in (ROOT / "reports").glob("*/*.md")
                  if p.parent.name != "perf" and p.name in ("report.md", "compare.md"))


REGENERATE = re.compile(r"Regenerate with `(python -m bench (?:report|compare) [^`]+)`")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A copy of the committed records, so rendering writes nothing into the repository
    (reading a folder rebuilds its derived tables)."""
    tmp = tmp_path_factory.mktemp("regenerate")
    if (ROOT / "studies").is_dir():
        shutil.copytree(ROOT / "studies", tmp / "studies",
                        ignore=shutil.ignore_patterns(*TRAINING_ONLY, ".*.tmp"))
    return tmp


@pytest.mark.parametrize("path", committed_reports(), ids=lambda p: p.parent.name)
def test_every_committed_report_regenerates_from_the_committed_records(path, workspace,
                                                                       monkeypatch):
    found = REGENERATE.search(path.read_text())
    assert found, f"{path.relative_to(ROOT)} names no command that renders it"
    argv = shlex.split(found.group(1))[3:]
    assert argv[argv.index("--results") + 1] == "studies", \
        f"{path.relative_to(ROOT)} is not rendered from the committed records (studies/)"
    assert argv[argv.index("--out") + 1] == "reports"
    monkeypatch.chdir(workspace)  # the command as printed, run from a copy of the repository
    assert main(argv) == 0
    fresh = workspace / path.relative_to(ROOT)
    assert fresh.read_text() == path.read_text()
    side = path.parent / "per_seed.csv"
    assert side.exists(), f"{path.relative_to(ROOT.parent)} has no per_seed.csv beside it"
    assert (fresh.parent / "per_seed.csv").read_text() == side.read_text()

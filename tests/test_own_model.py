"""A user's own model through ``bench run``: plugged in by file, module or entry point,
refused before the grid when it breaks the contract, redone when its source changes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.cli import main
from stforecast.models import DataSpec, ModelError, resolve_model
from stforecast.models.plugins import ENTRY_POINT_GROUP

REPO = Path(__file__).resolve().parents[1]

GOOD = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    """A linear map over time per node: the smallest model that keeps the contract."""

    def __init__(self, spec, hidden: int = 8, scale: float = 1.0):
        super().__init__()
        self.spec, self.scale = spec, scale
        self.inp = nn.Linear(spec.input_len, hidden)
        self.out = nn.Linear(hidden, spec.output_len)

    def forward(self, x):
        h = torch.relu(self.inp(x[..., 0].transpose(1, 2)))   # [B, N, hidden]
        return (self.scale * self.out(h)).transpose(1, 2).unsqueeze(-1)  # [B, T_out, N, 1]
'''

PROFILE = """\
dataset:
  name: synthetic-la
  options: {nodes: 6, days: 3, seed: 0}
train: {batch_size: 64}
schedules: constant
budgets: [3]
seeds: [0]
device: cpu
jobs: 1
threads: 1
"""


@pytest.fixture
def profile(tmp_path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE)
    return path


def write_model(folder: Path, body: str, name: str = "net.py") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def run(profile: Path, model: str, results: Path, *extra: str) -> int:
    return main(["run", "--profile", str(profile), "--model", model, "--results", str(results),
                 *extra])


def test_file_model_trains_and_the_report_names_it(profile, tmp_path, capsys):
    net = write_model(tmp_path, GOOD)
    results = tmp_path / "results"
    assert run(profile, f"{net}:TinyNet", results) == 0
    err = capsys.readouterr().err
    assert "212 parameters" in err and "experiment 'p-TinyNet'" in err
    exp = results / "p-TinyNet"
    with open(exp / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["finished"]
    record = json.loads((exp / "experiment.json").read_text())
    assert record["model"]["import_path"] == "net.py:TinyNet"  # absolute paths are not kept
    assert record["model"]["options"] == {"hidden": 8, "scale": 1.0}
    assert record["parameters"] == 12 * 8 + 8 + 8 * 12 + 12
    assert main(["report", "--results", str(results), "--experiment", "p-TinyNet",
                 "--out", str(tmp_path / "reports")]) == 0
    text = (tmp_path / "reports/p-TinyNet/report.md").read_text()
    assert "net.py:TinyNet" in text and "hidden=8" in text and "212 parameters" in text
    assert str(tmp_path) not in text


def test_options_are_checked_against_the_constructor(profile, tmp_path, capsys):
    net = write_model(tmp_path, GOOD)
    prof = tmp_path / "opts.yaml"
    prof.write_text(PROFILE + f"model:\n  name: {net}:TinyNet\n  options: {{hiden: 4}}\n")
    assert main(["run", "--profile", str(prof), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown option 'hiden' (did you mean 'hidden'?); accepted: hidden, scale" in err
    prof.write_text(PROFILE + f"model:\n  name: {net}:TinyNet\n  options: {{hidden: big}}\n")
    assert main(["run", "--profile", str(prof), "--results", str(tmp_path / "r")]) == 2
    assert "model.options.hidden: expected an integer, got 'big'" in capsys.readouterr().err
    prof.write_text(PROFILE + f"model:\n  name: {net}:TinyNet\n  options: {{hidden: 3}}\n")
    assert main(["run", "--profile", str(prof), "--results", str(tmp_path / "r")]) == 0
    record = json.loads((tmp_path / "r/opts/experiment.json").read_text())
    assert record["model"]["options"] == {"hidden": 3, "scale": 1.0}


BROKEN = {
    "missing file": (None, "file not found"),
    "import error": ("import no_such_package_xyz\n" + GOOD,
                     "importing", ),
    "no such class": (GOOD, "no class 'Nope' there; nn.Module classes found: TinyNet"),
    "wrong output shape": (GOOD.replace(".unsqueeze(-1)", ""),
                           "output shape: expected [64, 12, 6, 1] [B, T_out, N, 1], found "
                           "[64, 12, 6]"),
    "no parameters": ('''
        import torch
        from torch import nn

        class TinyNet(nn.Module):
            def __init__(self, spec):
                super().__init__()
                self.spec = spec

            def forward(self, x):
                return x[:, -1:, :, :1].expand(-1, self.spec.output_len, -1, -1)
        ''', "has no trainable parameters"),
    "non-finite loss": (GOOD.replace("self.scale * self.out(h)", "self.out(h) / 0.0"),
                        "the first training loss is not finite"),
    "no spec parameter": (GOOD.replace("def __init__(self, spec, ", "def __init__(self, s, ")
                          .replace("self.spec, self.scale = spec, scale",
                                   "self.spec, self.scale = s, scale")
                          .replace("spec.input_len", "s.input_len")
                          .replace("spec.output_len", "s.output_len"),
                          "the constructor must take the data spec as a parameter named 'spec'"),
    "constructor fails": (GOOD.replace("super().__init__()",
                                       "super().__init__()\n        raise ValueError('no graph')"),
                          "building it for 6 nodes, 12 → 12 steps failed: ValueError: no graph"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_model_is_refused_before_the_grid(case, profile, tmp_path, capsys):
    body, fragment = BROKEN[case]
    net = tmp_path / "net.py" if body is None else write_model(tmp_path, body)
    cls = "Nope" if case == "no such class" else "TinyNet"
    results = tmp_path / "results"
    assert run(profile, f"{net}:{cls}", results) == 2
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"model '{net}:{cls}'" in lines[0] and fragment in lines[0], err
    assert not results.exists()  # nothing created, nothing to clean up


def test_import_error_names_the_missing_module(profile, tmp_path, capsys):
    net = write_model(tmp_path, "import no_such_package_xyz\n" + GOOD)
    assert run(profile, f"{net}:TinyNet", tmp_path / "r") == 2
    assert ("ModuleNotFoundError: No module named 'no_such_package_xyz' (line 1 of net.py)"
            in capsys.readouterr().err)


def test_editing_the_model_source_redoes_its_runs(profile, tmp_path, capsys):
    net = write_model(tmp_path, GOOD)
    results = tmp_path / "results"
    assert run(profile, f"{net}:TinyNet", results) == 0
    first = (results / "p-TinyNet/epochs.csv").read_text()
    capsys.readouterr()
    assert run(profile, f"{net}:TinyNet", results) == 0  # unchanged: nothing to do
    assert "1 skipped" in capsys.readouterr().err
    net.write_text(textwrap.dedent(GOOD.replace("torch.relu", "torch.tanh")))
    assert run(profile, f"{net}:TinyNet", results) == 0
    err = capsys.readouterr().err
    assert "model.source_sha256" in err and "stale" in err and "redone" in err
    assert "1 finished" in err
    assert (results / "p-TinyNet/epochs.csv").read_text() != first  # new code, new numbers


def test_module_reference(profile, tmp_path, monkeypatch):
    pkg = tmp_path / "mymodels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write_model(pkg, GOOD, "nets.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = resolve_model("mymodels.nets:TinyNet")
    assert entry.origin == "module" and entry.import_path == "mymodels.nets:TinyNet"
    assert entry.source_sha256() is not None
    assert run(profile, "mymodels.nets:TinyNet", tmp_path / "r") == 0
    with pytest.raises(ModelError, match="importing module 'mymodels.nope' failed"):
        resolve_model("mymodels.nope:TinyNet")


def install_entry_point(folder: Path, name: str = "tinynet") -> None:
    """A package with a ``stbench.models`` entry point, as ``pip install`` would leave it."""
    pkg = folder / "tinypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write_model(pkg, GOOD, "models.py")
    dist = folder / "tinypkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n"
                                           f"{name} = tinypkg.models:TinyNet\n")


def test_entry_point_models_are_listed_and_run(profile, tmp_path, monkeypatch, capsys):
    install_entry_point(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "tinynet" in out and "tinypkg.models:TinyNet (from tinypkg)" in out
    entry = resolve_model("tinynet")
    assert entry.origin == "entry point of tinypkg"
    model = entry.build(DataSpec(num_nodes=3), {"hidden": 2})
    assert sum(p.numel() for p in model.parameters()) == 12 * 2 + 2 + 2 * 12 + 12
    assert run(profile, "tinynet", tmp_path / "r") == 0


def test_unknown_model_names_the_three_ways(profile, tmp_path, capsys):
    assert run(profile, "stdi", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert "unknown model 'stdi' (did you mean 'stid'?)" in err
    assert "path/to/file.py:Class" in err and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_the_example_runs_end_to_end_from_the_command_line(tmp_path):
    """The README's command, in a fresh process, from the repository root."""
    cmd = [sys.executable, "-m", "bench", "run", "--model",
           "examples/alternating.py:AlternatingNet", "--profile", "quick", "--schedules", "seed",
           "--budgets", "30", "--seeds", "1", "--results", str(tmp_path / "results")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3 runs: 3 finished" in done.stderr
    assert "experiment 'quick-AlternatingNet'" in done.stderr  # its own folder
    report = subprocess.run([sys.executable, "-m", "bench", "report", "--results",
                             str(tmp_path / "results"), "--experiment", "quick-AlternatingNet",
                             "--out", str(tmp_path / "reports")], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "reports/quick-AlternatingNet/report.md").read_text()
    assert "examples/alternating.py:AlternatingNet" in text
    assert "hidden=" in text and " parameters" in text

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
    err = capsys.readouterr().err
    assert ("ModuleNotFoundError: No module named 'no_such_package_xyz' at net.py:1: import "
            "no_such_package_xyz; 'no_such_package_xyz' is neither installed nor a file or "
            "folder beside net.py") in err


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


# -- published models: an adapter beside the authors' file ------------------------------------
UPSTREAM = '''
import torch
from torch import nn


class Upstream(nn.Module):
    """The authors' model, unchanged: [B, N, T_in] -> [B, N, T_out]."""

    def __init__(self, t_in, t_out, hidden=8):
        super().__init__()
        self.inp = nn.Linear(t_in, hidden)
        self.out = nn.Linear(hidden, t_out)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        return self.out(h)
'''

ADAPTER = '''
from torch import nn

from upstream import Upstream


class Adapter(nn.Module):
    """The suite's contract around the authors' model."""

    def __init__(self, spec, hidden: int = 8):
        super().__init__()
        self.net = Upstream(spec.input_len, spec.output_len, hidden)

    def forward(self, x):                          # [B, T_in, N, F]
        h = self.net(x[..., 0].transpose(1, 2))    # [B, N, T_out]
        return h.transpose(1, 2).unsqueeze(-1)     # [B, T_out, N, 1]
'''


def adapter_pair(tmp_path: Path, upstream: str = UPSTREAM) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    write_model(folder, upstream, "upstream.py")
    return write_model(folder, ADAPTER, "adapter.py")


def test_an_adapter_imports_its_sibling_and_an_edit_there_redoes_the_runs(profile, tmp_path,
                                                                         capsys):
    adapter = adapter_pair(tmp_path)
    results, reports = tmp_path / "results", tmp_path / "reports"
    path_before = list(sys.path)
    assert run(profile, f"{adapter}:Adapter", results) == 0
    assert sys.path == path_before  # importable while imported, not afterwards
    exp = results / "p-Adapter"
    model = json.loads((exp / "experiment.json").read_text())["model"]
    assert list(model["sources"]) == ["upstream.py"] and len(model["sources"]["upstream.py"]) == 64
    first = (exp / "epochs.csv").read_text()
    capsys.readouterr()
    assert run(profile, f"{adapter}:Adapter", results) == 0
    assert "1 skipped" in capsys.readouterr().err
    # the adapter is untouched; only the authors' file changes
    (adapter.parent / "upstream.py").write_text(
        textwrap.dedent(UPSTREAM.replace("torch.relu(", "torch.sigmoid(")))
    assert run(profile, f"{adapter}:Adapter", results) == 0
    err = capsys.readouterr().err
    assert "model.sources.upstream.py" in err and "stale" in err and "redone" in err, err
    assert "1 finished" in err
    assert (exp / "epochs.csv").read_text() != first  # the edited code ran
    assert main(["report", "--results", str(results), "--experiment", "p-Adapter",
                 "--out", str(reports)]) == 0
    text = (reports / "p-Adapter/report.md").read_text()
    reproduce = text.split("## Reproduce")[1]
    assert "`adapter.py`" in reproduce and "`upstream.py`" in reproduce
    assert ("python -m bench run --profile p.yaml --model adapter.py:Adapter --experiment "
            "p-Adapter --schedules constant --budgets 3 --seeds 0") in reproduce
    assert str(tmp_path) not in text


def test_a_forward_error_names_the_users_file_and_line(profile, tmp_path, capsys):
    """As in the published Graph WaveNet: 4-D input to a Conv1d, which torch refuses."""
    broken = UPSTREAM.replace("        self.out = nn.Linear(hidden, t_out)\n",
                              "        self.out = nn.Linear(hidden, t_out)\n"
                              "        self.conv = nn.Conv1d(1, 1, 1)\n"
                              ).replace("h = torch.relu(self.inp(x))",
                                        "h = self.conv(x.unsqueeze(1))")
    adapter = adapter_pair(tmp_path, broken)
    line = textwrap.dedent(broken).splitlines().index("        h = self.conv(x.unsqueeze(1))") + 1
    results = tmp_path / "results"
    assert run(profile, f"{adapter}:Adapter", results) == 2
    err = capsys.readouterr().err
    assert f"at upstream.py:{line}: h = self.conv(x.unsqueeze(1))" in err, err
    assert "forward on x [64, 12, 6, 3] [B, T_in, N, F] failed: RuntimeError" in err
    assert "Traceback" not in err and not results.exists()
    assert run(profile, f"{adapter}:Adapter", results, "--traceback") == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and f"line {line}" in err
    assert err.strip().splitlines()[-1].startswith("error: model ")


def test_a_build_error_in_a_sibling_names_its_line(profile, tmp_path, capsys):
    broken = UPSTREAM.replace("super().__init__()", "super().__init__()\n"
                              "        raise ValueError('needs a graph')")
    adapter = adapter_pair(tmp_path, broken)
    assert run(profile, f"{adapter}:Adapter", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert "failed: ValueError: needs a graph at upstream.py:11: raise ValueError(" in err, err


LISTED = '''
import torch
from torch import nn


class Listed(nn.Module):
    """Keeps its graph as Graph WaveNet keeps its supports: tensors in a plain list."""

    def __init__(self, spec):
        super().__init__()
        self.supports = [torch.tensor(spec.adjacency_as("random_walk"))]
        self.out = nn.Linear(spec.input_len, spec.output_len)

    def forward(self, x):
        h = torch.einsum("btn,nm->btm", x[..., 0], self.supports[0])   # [B, T_in, N]
        return self.out(h.transpose(1, 2)).transpose(1, 2).unsqueeze(-1)
'''


def test_a_graph_tensor_in_a_plain_list_is_warned_about(profile, tmp_path, capsys):
    net = write_model(tmp_path, LISTED)
    assert run(profile, f"{net}:Listed", tmp_path / "r") == 0  # a warning, not a refusal
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("warning: model")]
    assert len(warnings) == 1 and "supports[0] did not move with .to()" in warnings[0]
    assert "register_buffer" in warnings[0]
    fixed = LISTED.replace("self.supports = [torch.tensor(spec.adjacency_as(\"random_walk\"))]",
                           "self.register_buffer('support', "
                           "torch.tensor(spec.adjacency_as('random_walk')))"
                           ).replace("self.supports[0]", "self.support")
    net = write_model(tmp_path, fixed, "fixed.py")
    assert run(profile, f"{net}:Listed", tmp_path / "r2") == 0
    assert "did not move" not in capsys.readouterr().err


def test_swapped_nodes_and_steps_are_caught_when_n_equals_t_out(tmp_path, capsys):
    prof = tmp_path / "twelve.yaml"
    prof.write_text(PROFILE.replace("nodes: 6", "nodes: 12"))
    swapped = GOOD.replace("(self.scale * self.out(h)).transpose(1, 2).unsqueeze(-1)",
                           "(self.scale * self.out(h)).unsqueeze(-1)  # [B, N, T_out, 1]")
    net = write_model(tmp_path, swapped)
    assert run(prof, f"{net}:TinyNet", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert ("output shape for 13 nodes: expected [64, 12, 13, 1] [B, T_out, N, 1], found "
            "[64, 13, 12, 1]: nodes and steps are swapped") in err, err
    assert not (tmp_path / "r").exists()
    # a model that cannot be built for another node count: told, not refused
    fixed_n = GOOD.replace("self.spec, self.scale = spec, scale",
                           "self.spec, self.scale = spec, scale\n"
                           "        self.bias = nn.Parameter(torch.zeros(12, 1))")
    fixed_n = fixed_n.replace("return (self.scale", "return (self.bias + self.scale")
    net = write_model(tmp_path, fixed_n, "fixed_n.py")
    assert run(prof, f"{net}:TinyNet", tmp_path / "r") == 0
    err = capsys.readouterr().err
    assert "the output check cannot tell nodes from steps" in err, err


def test_model_options_on_the_command_line(profile, tmp_path, capsys):
    net = write_model(tmp_path, GOOD)
    results = tmp_path / "r"
    assert run(profile, f"{net}:TinyNet", results, "--model-option", "hidden=3",
               "--model-option", "scale=0.5") == 0
    record = json.loads((results / "p-TinyNet/experiment.json").read_text())
    assert record["model"]["options"] == {"hidden": 3, "scale": 0.5}
    assert "--model-option hidden=3 --model-option scale=0.5" in record["command"]
    for option, message in (
            ("hiden=3", "--model-option: model.options: model '{net}:TinyNet': unknown option "
                        "'hiden' (did you mean 'hidden'?); accepted: hidden, scale"),
            ("hidden=big", "--model-option: model.options.hidden: expected an integer, got "
                           "'big'"),
            ("hidden", "--model-option: expected key=value (e.g. hidden=64), got 'hidden'")):
        assert run(profile, f"{net}:TinyNet", tmp_path / "x", "--model-option", option) == 2
        err = capsys.readouterr().err
        assert message.format(net=net) in err, err
    assert not (tmp_path / "x").exists()


def test_model_options_join_the_profiles_own():
    from bench.overrides import apply_overrides
    from bench.profile import load_profile

    quick = load_profile("quick")
    changed = apply_overrides(quick, model_options=["embed_dim=8", "dropout=0.1"])
    assert changed.model.options == {**quick.model.options, "embed_dim": 8, "dropout": 0.1}
    other = apply_overrides(quick, model="gwnet", model_options=["dropout=0.1"])
    assert other.model.options == {"dropout": 0.1}  # the profile's are stid's, not gwnet's


NAN_LATER = GOOD.replace('''        self.out = nn.Linear(hidden, spec.output_len)
''', '''        self.out = nn.Linear(hidden, spec.output_len)
        self.register_buffer("calls", torch.zeros(()))
''').replace('''        h = torch.relu(self.inp(x[..., 0].transpose(1, 2)))   # [B, N, hidden]
''', '''        h = torch.relu(self.inp(x[..., 0].transpose(1, 2)))   # [B, N, hidden]
        if self.training:
            self.calls += 1
            if self.calls > 12:  # a model that turns to NaN in its second epoch
                h = h * float("nan")
''')


def test_a_grid_in_which_every_run_diverged_exits_1_and_its_report_says_so(profile, tmp_path,
                                                                          capsys):
    net = write_model(tmp_path, NAN_LATER)
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert run(profile, f"{net}:TinyNet", results, "--schedules", "constant,plateau") == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: every run diverged (2 of 2; ") and "train loss nan" in last
    assert "the model" in last and "not the schedule" in last
    assert run(profile, f"{net}:TinyNet", results, "--schedules", "constant,plateau") == 1
    assert "2 skipped" in capsys.readouterr().err  # still a failure when nothing is redone
    assert main(["report", "--results", str(results), "--experiment", "p-TinyNet",
                 "--out", str(reports)]) == 0
    text = (reports / "p-TinyNet/report.md").read_text()
    lines = text.splitlines()
    assert lines[0] == "# p-TinyNet: every run diverged"
    assert lines[2].startswith("**Every run of experiment `p-TinyNet` diverged** (2 of 2 cells")
    assert text.count("training diverged at epoch 1 (train loss nan)") == 2
    assert "verdict" not in text.replace("computes no comparison, verdict", "")
    assert "beats" not in text and "## Claims" not in text


def test_installed_packages_a_model_imports_are_recorded_by_version(tmp_path):
    """An installed package is recorded by its version, not hashed; the suite's own
    dependencies (torch, numpy) are in every run's environment already."""
    from importlib import metadata

    net = write_model(tmp_path, "import hypothesis  # noqa: F401\nimport numpy\n" + GOOD)
    entry = resolve_model(f"{net}:TinyNet")
    assert entry.package_versions() == {"hypothesis": metadata.version("hypothesis")}
    assert entry.sources_sha256() == {}  # one file: nothing beside it was loaded


def test_the_worked_adapter_of_the_docs_runs_without_warnings(profile, tmp_path, capsys):
    """docs/own-model.md's adapter around a published-style model: it keeps its graph in
    buffers, so nothing is left behind by .to(); the authors' file is fingerprinted."""
    adapter = REPO / "examples/published/adapter.py"
    results = tmp_path / "r"
    assert run(profile, f"{adapter}:WaveNetAdapter", results, "--model-option",
               "hidden=8") == 0
    err = capsys.readouterr().err
    assert "warning" not in err and "1 finished" in err
    model = json.loads((results / "p-WaveNetAdapter/experiment.json").read_text())["model"]
    assert list(model["sources"]) == ["wavenet_style.py"]
    assert model["options"] == {"hidden": 8, "layers": 3, "dropout": 0.3, "in_dim": 2}

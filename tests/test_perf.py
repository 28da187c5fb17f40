"""``bench perf`` end to end on a tiny grid: both ways run, records agree, ratios printed."""

import json

import pytest
import torch

from bench.cli import main

TINY = """
dataset: {name: synthetic-la, options: {nodes: 8, days: 3, seed: 0}}
model: {name: stid, options: {embed_dim: 8, node_dim: 8, tod_dim: 8, dow_dim: 8, num_layers: 1,
        dropout: 0.0}}
schedules: all
budgets: [6, 8]
seeds: [0]
device: cpu
jobs: 2
threads: 1
"""


@pytest.mark.slow
def test_perf_command_compares_both_ways(tmp_path, capsys, monkeypatch):
    import bench.perf.command as perf

    # The memory probe builds full METR-LA-size data; keep this test small.
    monkeypatch.setattr(perf, "pipeline_memory", lambda: {
        "indexed": 1, "materialised": 10, "steps": 1, "nodes": 1, "ratio": 0.1})
    profile = tmp_path / "tiny.yaml"
    profile.write_text(TINY)
    code = main(["perf", "--profile", str(profile), "--schedules", "plateau,warmup_cosine",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    out = capsys.readouterr().out
    assert "whole-grid wall time, suite / naive" in out
    result = json.loads((tmp_path / "out/perf/tiny.json").read_text())
    grid = result["grid"]
    assert grid["cells"] == 4 and grid["identical_cells"] == 4  # same arithmetic, same numbers
    assert grid["naive_epochs"] == 28 and grid["folded_epochs"] == 8 + 14
    # warmup_cosine at 6 epochs forks from the 8-epoch run when its 5-epoch warmup ends.
    assert grid["trunk_epochs_saved"] == 5 and grid["suite_epochs"] == 8 + 8 + 1
    assert "shared trunks saved 5 more" in out
    assert set(result["breakdown"]["seconds"]) == {"data", "forward", "backward", "optimizer",
                                                   "evaluation", "io"}
    levers = {r["lever"].split(" (")[0].split(",")[0] for r in result["levers"]}
    assert {"float32", "bfloat16 autocast", "torch.compile", "fused"} <= levers
    assert [r["members"] for r in result["limits"]] == [1, 4]
    assert "## Against the machine's limit" in out


@pytest.mark.parametrize("fuse", ["a", "4,x", "0", "2,-1"])
def test_levers_refuse_bad_run_counts(fuse, capsys):
    assert main(["perf", "--levers", "--fuse", fuse]) == 2
    err = capsys.readouterr().err
    assert "--fuse" in err and "Traceback" not in err


# -- against the machine's limit (bench.perf.limits): counts and shapes exact, times only
# -- checked to be finite and positive, never against a threshold.

def test_flop_count_of_a_linear_is_the_analytic_count():
    import torch

    from bench.perf.limits import Gemm, count_flops

    b, i, o = 5, 7, 3
    lin = torch.nn.Linear(i, o)
    x = torch.randn(b, i)
    # forward x @ W^T, backward dW = dY^T @ x (the input needs no gradient): 2 products of
    # b*i*o multiply-adds, 2 FLOPs each; the bias and the sum count nothing.
    flops, gemms = count_flops(lambda: lin(x).sum().backward())
    assert flops == 2 * 2 * b * i * o
    assert gemms == [Gemm(1, b, i, o), Gemm(1, o, b, i)]
    x.requires_grad_(True)  # now dX = dY @ W too
    flops, gemms = count_flops(lambda: lin(x).sum().backward())
    assert flops == 3 * 2 * b * i * o == sum(g.flops for g in gemms)


def test_dominant_shape_is_the_big_linear():
    import torch

    from bench.perf.limits import Gemm, count_flops, dominant_shape, flops_by_shape

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 96), torch.nn.ReLU(), torch.nn.Linear(96, 96),
                                torch.nn.ReLU(), torch.nn.Linear(96, 2))
    x = torch.randn(32, 4)
    flops, gemms = count_flops(lambda: model(x).sum().backward())
    # the 96×96 layer's forward product (ties with its backward products go to the forward)
    assert dominant_shape(gemms) == Gemm(1, 32, 96, 96)
    shapes = dict(flops_by_shape(gemms))
    assert shapes[Gemm(1, 32, 96, 96)] == 2 * 32 * 96 * 96 * 2  # forward and dX = dY @ W
    assert sum(shapes.values()) == flops


def test_dominant_shape_of_a_convolution_is_its_gemm():
    import torch

    from bench.perf.limits import Gemm, count_flops, dominant_shape

    conv = torch.nn.Conv2d(6, 10, kernel_size=(1, 3))
    x = torch.randn(2, 6, 5, 9, requires_grad=True)
    flops, gemms = count_flops(lambda: conv(x).sum().backward())
    # output 2×10×5×7: rows = 2*5*7 positions, inner = 6 channels × 3 taps, columns = 10
    assert dominant_shape(gemms) == Gemm(1, 70, 18, 10)
    assert flops == sum(g.flops for g in gemms) == 3 * 2 * 70 * 18 * 10


def _numbers(section: str) -> list[list[str]]:
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def test_limits_of_a_tiny_stid_on_cpu(tmp_path):
    import math

    from bench.perf.limits import LIMIT_HEADER, against_limit, render_limits

    profile = tmp_path / "tiny.yaml"
    profile.write_text(TINY)
    rows = against_limit(str(profile), fuse=(2,), device="cpu", steps=3)
    assert [r["members"] for r in rows] == [1, 2]
    assert rows[1]["flops_per_step"] == 2 * rows[0]["flops_per_step"]  # FLOPs scale by K
    assert rows[0]["dominant"]["batch"] == 1 and rows[1]["dominant"]["batch"] == 2
    for r in rows:
        assert r["threads"] == 1 and 0 < r["dominant_share"] <= 1
    section = render_limits(rows)
    assert section.startswith("## Against the machine's limit")
    assert "| " + " | ".join(LIMIT_HEADER) + " |" in section
    table = _numbers(section)
    assert len(table) == 2
    for cells in table:
        for c in cells[2:5] + cells[6:]:
            assert math.isfinite(float(c)) and float(c) > 0, (c, cells)
        assert cells[5].startswith(("mm ", "bmm "))


def test_levers_report_the_limit_in_markdown_and_json(tmp_path, capsys, monkeypatch):
    import bench.perf.command as perf

    # torch.compile takes long on a CPU; the lever table and the effect rows (both under
    # test elsewhere) are stubbed here.
    monkeypatch.setattr(perf, "lever_timings", lambda *a, **k: [
        {"lever": "float32, eager", "threads": 1, "ms_per_step": 1.0, "ratio": 1.0,
         "device": "cpu"}])
    monkeypatch.setattr(perf, "precision_effect", lambda *a, **k: [
        {"arithmetic": name, "epochs": 6, "seed": 0, "threads": 1, "test_mae": 3.0,
         "seconds": 1.0, "relative_difference": 0.0}
        for name in ("float32", "float32 again (noise floor)")])
    profile = tmp_path / "tiny.yaml"
    profile.write_text(TINY)
    assert main(["perf", "--levers", "--profile", str(profile), "--fuse", "2",
                 "--out", str(tmp_path / "out")]) == 0
    assert "## Against the machine's limit" in capsys.readouterr().out
    md = (tmp_path / "out/perf/levers-tiny-cpu.md").read_text()
    limit = md.split("## Against")[1].split("## Effect")[0]
    assert "Against the machine's limit" in md and len(_numbers(limit)) == 2
    result = json.loads((tmp_path / "out/perf/levers-tiny-cpu.json").read_text())
    assert [r["members"] for r in result["limits"]] == [1, 2]
    assert all(r["ratio"] > 0 for r in result["limits"])
    assert "## Effect on results (6 epochs" in md
    assert [r["arithmetic"] for r in result["precision_effect"]][:2] == [
        "float32", "float32 again (noise floor)"]


def test_precision_effect_reads_each_lever_against_a_float32_noise_floor(tmp_path):
    """On the CPU a run at the profile's one thread is bit-reproducible, so the floor is
    exactly zero (even where the process has more threads); bf16 moves the result; TF32 is
    a CUDA lever and is not offered here."""
    from bench.perf.levers import precision_effect

    profile = tmp_path / "tiny.yaml"
    profile.write_text(TINY)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rows = precision_effect(str(profile), device="cpu", epochs=2)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)
    assert [r["arithmetic"] for r in rows] == ["float32", "float32 again (noise floor)",
                                               "bfloat16 autocast", "torch.compile",
                                               "denormals flushed to zero"]
    assert rows[0]["relative_difference"] == 0.0 and rows[1]["relative_difference"] == 0.0
    assert rows[1]["test_mae"] == rows[0]["test_mae"]
    assert rows[2]["relative_difference"] != 0.0
    assert all(r["epochs"] == 2 and r["seed"] == 0 and r["threads"] == 1 for r in rows)

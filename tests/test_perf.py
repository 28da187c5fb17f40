"""``bench perf`` end to end on a tiny grid: both ways run, records agree, ratios printed."""

import json

import pytest

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
    assert grid["naive_epochs"] == 28 and grid["suite_epochs"] == 8 + 14
    assert set(result["breakdown"]["seconds"]) == {"data", "forward", "backward", "optimizer",
                                                   "evaluation", "io"}
    levers = {r["lever"].split(" (")[0].split(",")[0] for r in result["levers"]}
    assert {"float32", "bfloat16 autocast", "torch.compile", "fused"} <= levers


@pytest.mark.parametrize("fuse", ["a", "4,x", "0", "2,-1"])
def test_levers_refuse_bad_run_counts(fuse, capsys):
    assert main(["perf", "--levers", "--fuse", fuse]) == 2
    err = capsys.readouterr().err
    assert "--fuse" in err and "Traceback" not in err

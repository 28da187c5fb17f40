"""The run builder: one path for every run, records pinned across refactors, a dry step that
leaves no trace."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.build import build_run, data_spec, dry_step
from bench.cli import main
from bench.config import to_dict
from bench.data import load_data
from bench.identity import config_hash, experiment_identity, run_payload
from bench.plan import plan_jobs
from bench.profile import load_resolved
from schedules import BUILTIN
from stforecast.engine import set_tf32

FIXTURE = Path(__file__).parent / "fixtures" / "pinned_records.csv"
PINNED_PROFILE = Path(__file__).parent / "fixtures" / "pinned_profile.yaml"  # quick, 12 nodes
PINNED_SCHEDULES = "plateau,multistep,warmup_cosine,onecycle,schedulefree"
EXACT = ("epoch", "lr", "lr_end")


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_records_match_the_pinned_ones(tmp_path):
    """Records of a short grid (metric-driven, per-epoch, per-step and schedule-free
    schedules) as the suite produced them before its run builder and epoch loop were
    unified. The lr path must match exactly; metrics to 2e-3 relative, because the last bits
    of float reductions differ between CPU models and grow over 8 epochs of training (on the
    machine that wrote the fixture they match bit for bit; on an Intel Xeon host, with the
    same code, the largest difference is 6.8e-4, one-cycle's test MAE at 12 steps)."""
    assert main(["run", "--profile", str(PINNED_PROFILE), "--schedules", PINNED_SCHEDULES,
                 "--budgets", "8",
                 "--seeds", "1", "--jobs", "1", "--results", str(tmp_path),
                 "--experiment", "pin"]) == 0
    got = {(r["schedule"], r["epoch"]): r for r in read_csv(tmp_path / "pin" / "epochs.csv")}
    pinned = read_csv(FIXTURE)
    assert len(got) == len(pinned) == 40
    for want in pinned:
        row = got[(want["schedule"], want["epoch"])]
        for key, value in want.items():
            if key in EXACT or key in ("schedule", "budget", "seed"):
                assert row[key] == value, (want["schedule"], key)
            else:
                assert float(row[key]) == pytest.approx(float(value), rel=2e-3), key


@pytest.fixture(scope="module")
def quick():
    profile = replace(load_resolved("quick"), budgets=(6,))
    return profile, load_data(profile, torch.device("cpu"))


def test_every_schedule_of_a_seed_starts_from_the_same_weights(quick):
    profile, data = quick
    a = build_run(profile, BUILTIN.get("plateau"), 3, 6, data)
    b = build_run(profile, BUILTIN.get("onecycle"), 3, 6, data)
    c = build_run(profile, BUILTIN.get("plateau"), 4, 6, data)
    for (name, pa), pb in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.model.parameters(),
                                                         c.model.parameters()))
    # the scheduler is the schedule's genuine torch object, for this budget
    assert type(b.scheduler).__name__ == "OneCycleLR" and b.scheduler.total_steps == \
        6 * -(-data.num_windows("train") // profile.train.batch_size)


def test_the_data_spec_carries_the_windows_and_features(quick):
    profile, data = quick
    spec = data_spec(data)
    assert (spec.num_nodes, spec.input_len, spec.output_len) == (10, 12, 12)
    assert spec.input_features == ("value", "time_of_day", "day_of_week")
    assert spec.num_features == data.num_features == 3
    assert spec.steps_per_day == 288 and spec.adjacency.shape == (10, 10)


def test_window_lengths_reach_the_model(tmp_path):
    """A profile with 6 → 3 windows builds a model for 6 → 3 (not the default 12 → 12)."""
    profile = load_resolved("quick")
    profile = replace(profile, dataset=replace(profile.dataset, input_len=6, output_len=3))
    data = load_data(profile, torch.device("cpu"))
    trainer = build_run(profile, BUILTIN.get("constant"), 0, 2, data)
    x, y = data.batch(data.starts["train"][:4])
    assert trainer.model(x).shape == (4, 3, 10, 1) and y.shape == (4, 3, 10, 1)


def test_the_dry_step_leaves_the_random_state_alone(quick):
    profile, data = quick
    torch.manual_seed(123)
    np.random.seed(7)
    before = torch.get_rng_state(), np.random.get_state()[1].copy()
    info = dry_step(profile, BUILTIN.get("constant"), data)
    assert info.parameters > 0
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1])



def _tf32_flags() -> tuple[str, ...]:
    """(matmul, convolution, RNN) precision, through whichever API this torch has."""
    if not hasattr(torch.backends.cudnn, "conv"):
        legacy = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                  torch.backends.cudnn.allow_tf32)
        return tuple("tf32" if on else "ieee" for on in legacy)
    return (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision,
            torch.backends.cudnn.rnn.fp32_precision)


def test_tf32_is_set_both_ways_by_every_run(quick):
    """A run under ``train.tf32`` turns TF32 on for matmuls, convolutions and RNNs; the next
    run of a float32 profile turns all three back to IEEE (cuDNN's own default is TF32)."""
    profile, data = quick
    on = replace(profile, train=replace(profile.train, tf32=True))
    try:
        build_run(on, BUILTIN.get("constant"), 0, 2, data)
        assert _tf32_flags() == ("tf32",) * 3
        build_run(profile, BUILTIN.get("constant"), 0, 2, data)
        assert _tf32_flags() == ("ieee",) * 3
    finally:
        set_tf32(False)


def test_flush_denormal_is_set_both_ways_by_every_run(quick):
    """A run under ``train.flush_denormal`` makes a denormal input count as zero; the next
    run of a profile without it keeps denormals again."""
    profile, data = quick
    denormal = torch.tensor([1e-39])  # below float32's smallest normal, 1.18e-38
    on = replace(profile, train=replace(profile.train, flush_denormal=True))
    try:
        build_run(on, BUILTIN.get("constant"), 0, 2, data)
        assert (denormal * 1.0).item() == 0.0
        build_run(profile, BUILTIN.get("constant"), 0, 2, data)
        assert (denormal * 1.0).item() == pytest.approx(1e-39, rel=1e-3)
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.parametrize("setting", ["tf32", "flush_denormal"])
def test_a_setting_added_later_keeps_earlier_identities_at_its_old_value(quick, setting):
    """A training setting added after results were written (``train.tf32``,
    ``train.flush_denormal``) at False, how every earlier run trained, is left out of the
    identity, so earlier runs keep their config hash; set, it is a setting like any other."""
    profile, _ = quick
    item = BUILTIN.get("constant")
    job = plan_jobs([item], (4,), (0,))[0]
    before = {k: v for k, v in to_dict(profile.train).items()
              if k not in ("tf32", "flush_denormal")}
    assert experiment_identity(profile)["train"] == before
    on = replace(profile, train=replace(profile.train, **{setting: True}))
    assert experiment_identity(on)["train"] == {**before, setting: True}
    assert config_hash(run_payload(on, item, job)) != config_hash(run_payload(profile, item, job))


def test_tf32_into_a_float32_experiment_is_refused(tmp_path, capsys):
    """The same experiment name with TF32 on is another experiment: refused with exit 2,
    naming the setting, and the float32 results stay as they were."""
    tiny = ("dataset: {name: synthetic-la, options: {nodes: 8, days: 3, seed: 0}}\n"
            "model: {name: stid, options: {embed_dim: 4, node_dim: 4, tod_dim: 4, dow_dim: 4,"
            " num_layers: 1}}\n"
            "train: {batch_size: 32%s}\nschedules: constant\nbudgets: [2]\nseeds: [0]\n"
            "device: cpu\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "tiny.yaml").write_text(tiny % "")
    (tmp_path / "b" / "tiny.yaml").write_text(tiny % ", tf32: true")
    results = tmp_path / "results"
    assert main(["run", "--profile", str(tmp_path / "a" / "tiny.yaml"), "--results",
                 str(results), "--jobs", "1"]) == 0
    kept = (results / "tiny" / "epochs.csv").read_bytes()
    capsys.readouterr()
    assert main(["run", "--profile", str(tmp_path / "b" / "tiny.yaml"), "--results",
                 str(results), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the data line: one line naming the setting
    assert "other settings (train.tf32" in last and "Traceback" not in err
    assert (results / "tiny" / "epochs.csv").read_bytes() == kept


# -- what the dry step proves about a model ---------------------------------------------------
class _Held(torch.nn.Module):
    """Graph tensors kept every way a published model keeps them."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.register_buffer("kept", torch.ones(3))
        self.plain = torch.ones(3)                          # a plain attribute
        self.supports = [torch.ones(3), self.kept]          # a list, a buffer's alias included
        self.by_name = {"fwd": torch.ones(2)}
        self.index = torch.arange(4)                        # an integer tensor: edge indices


def test_tensors_that_to_leaves_behind_are_named():
    from bench.build import stranded_tensors

    stranded = stranded_tensors(_Held())
    assert sorted(stranded) == sorted(["plain", "supports[0]", "supports[1]",
                                       "by_name['fwd']", "index"])


def test_a_module_that_moves_its_own_tensors_is_trusted():
    from bench.build import stranded_tensors

    class MovesItsOwn(_Held):
        def _apply(self, fn, recurse=True):
            self.plain = fn(self.plain)
            self.supports = [fn(t) for t in self.supports]
            self.by_name = {k: fn(v) for k, v in self.by_name.items()}
            self.index = fn(self.index)
            return super()._apply(fn, recurse)

    assert stranded_tensors(MovesItsOwn()) == []
    assert stranded_tensors(torch.nn.Sequential(torch.nn.Linear(2, 2))) == []


def test_the_constructor_runs_once_before_the_grid(quick, monkeypatch):
    profile, data = quick
    calls = []
    real = __import__("bench.build", fromlist=["make_model"]).make_model

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("bench.build.make_model", counting)
    profile = replace(profile, dataset=replace(profile.dataset, output_len=6, input_len=6))
    dry_step(profile, BUILTIN.get("constant"), load_data(profile, torch.device("cpu")))
    assert len(calls) == 1


def test_the_adjacency_forms_published_models_use():
    from stforecast.models import DataSpec

    w = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    spec = DataSpec(num_nodes=3, adjacency=w)
    assert np.array_equal(spec.adjacency_as("raw"), w)
    rw = spec.adjacency_as("random_walk")
    assert np.allclose(rw.sum(axis=1), 1) and np.allclose(rw[0], [1 / 3, 2 / 3, 0])
    back = spec.adjacency_as("reverse_random_walk")
    assert np.allclose(back, w.T / w.T.sum(axis=1, keepdims=True))
    d = w.sum(axis=1) ** -0.5
    assert np.allclose(spec.adjacency_as("symmetric"), d[:, None] * w * d[None, :])
    no_loops = spec.adjacency_as("raw", self_loops=False)
    assert np.diag(no_loops).tolist() == [0, 0, 0] and no_loops[0, 1] == 2
    assert np.diag(spec.adjacency_as("random_walk", self_loops=True)).all()
    lap = spec.adjacency_as("scaled_laplacian")
    assert np.allclose(lap, lap.T) and np.abs(np.linalg.eigvalsh(lap)).max() <= 1 + 1e-6
    assert spec.adjacency is w and np.array_equal(w[0], [1, 2, 0])  # the spec's own is kept
    with pytest.raises(ValueError, match="unknown adjacency form 'laplace'"):
        spec.adjacency_as("laplace")
    with pytest.raises(ValueError, match="has no graph"):
        DataSpec(num_nodes=3).adjacency_as("raw")

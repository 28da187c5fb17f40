"""The profile: dataset, model, training settings and grid of an experiment, as frozen
dataclasses loaded from YAML.

Profiles are small YAML files in ``bench/profiles/`` (``quick``, ``default``, ``los-loop``,
``paper``, ``gpu-synthetic``) or any path; ``bench.overrides`` applies command-line flags.
Everything is validated here, before a dataset is loaded or a tensor allocated, so that a
typo costs a second, not an hour: ``validate_components`` checks the dataset and model names
and their options against the registries (for a user's model, against its constructor).
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.config import ConfigError, convert, from_dict, read_yaml, suggest, to_dict
from stforecast.datasets import dataset_names, get_dataset
from stforecast.datasets.registry import is_path
from stforecast.models import ModelEntry, ModelError, resolve_model

PROFILE_DIR = Path(__file__).parent / "profiles"
MAX_BUDGET = 10_000


@dataclass(frozen=True)
class DatasetSettings:
    name: str = "synthetic-la"
    options: dict = field(default_factory=dict)
    data_dir: str | None = None
    train_fraction: float = 0.7
    val_fraction: float = 0.1
    input_len: int = 12
    output_len: int = 12

    def __post_init__(self) -> None:
        if not (0 < self.train_fraction < 1 and 0 < self.val_fraction < 1
                and self.train_fraction + self.val_fraction < 1):
            raise ValueError("train_fraction and val_fraction must be in (0, 1) and leave a "
                             f"test share, got {self.train_fraction} and {self.val_fraction}")
        if not (1 <= self.input_len <= 1000 and 1 <= self.output_len <= 1000):
            raise ValueError("input_len and output_len must be in [1, 1000]")


@dataclass(frozen=True)
class ModelSettings:
    """``name``: a built-in, an installed entry point, ``file.py:Class`` or ``module:Class``."""

    name: str = "stid"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int = 64
    eval_batch_size: int = 256
    grad_clip: float | None = 5.0
    divergence_factor: float = 100.0
    autocast: str | None = None
    compile: bool = False
    tf32: bool = False  # TF32 matmuls and convolutions on CUDA (changes results)
    flush_denormal: bool = False  # denormal floats flushed to zero on the CPU (faster)

    def __post_init__(self) -> None:
        if not (1 <= self.batch_size <= 65536 and 1 <= self.eval_batch_size <= 65536):
            raise ValueError(f"batch sizes must be in [1, 65536], got {self.batch_size} and "
                             f"{self.eval_batch_size}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or null, got {self.grad_clip}")
        if self.divergence_factor <= 1:
            raise ValueError(f"divergence_factor must exceed 1, got {self.divergence_factor}")
        if self.autocast not in (None, "bf16"):
            raise ValueError(f"autocast must be null or 'bf16', got {self.autocast!r}")


@dataclass(frozen=True)
class TuneSettings:
    """The tuning protocol (``bench.tuning``): every schedule gets the same search space.

    Each schedule is trained at every point of ``lr`` x ``weight_decay`` (empty: the
    schedule's own weight decay) on ``tuning_seeds``; per budget, the point with the lowest
    mean final validation MAE is chosen and trained on the profile's ``seeds``, the
    evaluation seeds, which alone enter the test comparison.

    With ``extend``, a choice at the smallest or largest lr of the grid is not taken as the
    answer: the grid is extended one step outward (its own geometric ratio) and the new
    points trained, until the choice is interior or ``lr_bounds`` is reached. With
    ``own_settings`` off, only tuned settings are evaluated (the schedules' own settings are
    not trained on the evaluation seeds).
    """

    lr: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    weight_decay: tuple[float, ...] = ()
    tuning_seeds: tuple[int, ...] = (1000, 1001)
    extend: bool = True
    lr_bounds: tuple[float, ...] = (1e-5, 3e-2)
    own_settings: bool = True

    def __post_init__(self) -> None:
        if not self.lr or any(not (0 < v <= 10) for v in self.lr):
            raise ValueError(f"tune.lr must list learning rates in (0, 10], got {list(self.lr)}")
        if any(not (0 <= v < 1) for v in self.weight_decay):
            raise ValueError(f"tune.weight_decay values must be in [0, 1), got "
                             f"{list(self.weight_decay)}")
        if len(set(self.lr)) != len(self.lr) or \
                len(set(self.weight_decay)) != len(self.weight_decay):
            raise ValueError("tune.lr and tune.weight_decay must not repeat a value")
        check_seeds(self.tuning_seeds)
        if len(self.lr_bounds) != 2 or not (0 < self.lr_bounds[0] < self.lr_bounds[1] <= 10):
            raise ValueError(f"tune.lr_bounds must be [low, high] with 0 < low < high <= 10, "
                             f"got {list(self.lr_bounds)}")
        outside = [v for v in self.lr if not (self.lr_bounds[0] <= v <= self.lr_bounds[1])]
        if outside:
            raise ValueError(f"tune.lr {outside} lies outside tune.lr_bounds "
                             f"{list(self.lr_bounds)}")


@dataclass(frozen=True)
class ReportSettings:
    """How ``bench report`` judges the experiment, declared before any result is seen: the
    reference every schedule is compared with (never a best picked on the same seeds) and
    the equivalence margin δ on the MAE ratio. ``bench run`` records them in the experiment
    folder (``report.json``); they change no number, so they are not part of its identity."""

    reference: str = "plateau"
    margin: float = 0.02

    def __post_init__(self) -> None:
        if not (self.reference.strip() and self.reference.isprintable()
                and len(self.reference) <= 100):
            raise ValueError(f"report.reference must name a schedule, got {self.reference!r}")
        if not (0 < self.margin < 0.5):
            raise ValueError(f"report.margin must be in (0, 0.5), got {self.margin}")


@dataclass(frozen=True)
class Profile:
    """A complete experiment description; ``bench run`` flags override single fields."""

    description: str = ""
    dataset: DatasetSettings = field(default_factory=DatasetSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    schedules: str = "all"
    budgets: tuple[int, ...] = (30, 60, 100)
    seeds: tuple[int, ...] = (0, 1, 2)
    device: str = "auto"
    jobs: int = 1  # runs trained at once, each in its own process
    # CPU threads per run; None shares the machine's cores among the jobs. Float reductions
    # depend on the thread count, so fixing it makes records identical across --jobs values.
    threads: int | None = None
    # Train this many runs of equal length at once, stacked with torch.func.vmap (a GPU
    # option; 1 trains each run on its own).
    fuse: int = 1
    # The tuning protocol; with it, ``seeds`` are the evaluation seeds.
    tune: TuneSettings | None = None
    # How the report judges: reference schedule and equivalence margin.
    report: ReportSettings = field(default_factory=ReportSettings)

    def __post_init__(self) -> None:
        check_budgets(self.budgets)
        check_seeds(self.seeds)
        if self.tune is not None and set(self.tune.tuning_seeds) & set(self.seeds):
            shared = sorted(set(self.tune.tuning_seeds) & set(self.seeds))
            raise ValueError(f"tune.tuning_seeds and the evaluation seeds share {shared}: a "
                             "seed used to choose a setting must not also judge it")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if not (1 <= self.jobs <= 256):
            raise ValueError(f"jobs must be in [1, 256], got {self.jobs}")
        if not (1 <= self.fuse <= 256):
            raise ValueError(f"fuse must be in [1, 256], got {self.fuse}")
        if self.threads is not None and not (1 <= self.threads <= 1024):
            raise ValueError(f"threads must be in [1, 1024] or null, got {self.threads}")

    def threads_per_run(self) -> int:
        if self.threads is not None:
            return self.threads
        return max(1, (os.cpu_count() or 1) // self.jobs)


def check_budgets(budgets: tuple[int, ...]) -> None:
    if not budgets:
        raise ValueError("budgets must list at least one epoch count")
    for b in budgets:
        if not (1 <= b <= MAX_BUDGET):
            raise ValueError(f"budget {b} out of range: epochs must be in [1, {MAX_BUDGET}]")
    if len(set(budgets)) != len(budgets):
        raise ValueError(f"budgets repeat a value: {list(budgets)}")


def check_seeds(seeds: tuple[int, ...]) -> None:
    if not seeds:
        raise ValueError("seeds must list at least one seed")
    for s in seeds:
        if not (0 <= s < 2**31):
            raise ValueError(f"seed {s} out of range: seeds must be in [0, 2^31)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat a value: {list(seeds)}")


# -- loading ------------------------------------------------------------------------------
def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def profile_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: profile file not found")
        return path
    candidate = PROFILE_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise ConfigError(f"unknown profile '{name_or_path}'"
                          f"{suggest(name_or_path, profile_names())}; known: "
                          f"{', '.join(profile_names())} (or a path to a YAML file)")
    return candidate


def load_profile(name_or_path: str) -> Profile:
    path = profile_path(name_or_path)
    return from_dict(Profile, read_yaml(path), str(path))


def load_resolved(name_or_path: str) -> Profile:
    """A profile loaded and checked against the registries (see ``validate_components``)."""
    return validate_components(load_profile(name_or_path), str(profile_path(name_or_path)))


# -- validation against the registries ------------------------------------------------------
def validate_components(profile: Profile, where: str = "profile") -> Profile:
    """The profile with dataset and model checked against the registries and their options
    converted to the declared types; model options come back complete (every option the
    model accepts), which is the resolved form saved with each run."""
    ds = profile.dataset
    options = dict(ds.options)
    if ds.name not in dataset_names():
        if not is_path(ds.name):
            raise ConfigError(f"{where}: dataset.name: unknown dataset '{ds.name}'"
                              f"{suggest(ds.name, dataset_names())}; known: "
                              f"{', '.join(dataset_names())} (or a path to your own files)")
    else:
        entry = get_dataset(ds.name)
        hints = typing.get_type_hints(entry.load)
        for key, value in ds.options.items():
            if key not in entry.options:
                raise ConfigError(f"{where}: dataset.options.{key}: unknown option for "
                                  f"'{ds.name}'{suggest(key, list(entry.options))}; options: "
                                  f"{', '.join(entry.options) or 'none'}")
            if key in hints:
                options[key] = convert(hints[key], value, where, f"dataset.options.{key}")
    try:
        entry = resolve_model(profile.model.name)
    except ModelError as exc:  # chained: --traceback prints the import's own trace
        raise ConfigError(f"{where}: model.name: {exc}") from exc
    return replace(profile, dataset=replace(ds, options=options),
                   model=replace(profile.model, options=model_options(entry, profile.model.options,
                                                                      where)))


def model_options(entry: ModelEntry, given: dict, where: str) -> dict:
    """A model's options checked by name and converted to their declared types, completed
    with the defaults: the resolved form recorded with every run."""
    try:
        entry.check_options(given)
    except ModelError as exc:
        raise ConfigError(f"{where}: model.options: {exc}") from None
    config = entry.config_cls
    if config is not None:
        return to_dict(from_dict(config, given, where, "model.options"))
    accepted, _ = entry.options()
    out = {}
    for option in accepted:
        if option.name in given:
            tp = option.type
            value = given[option.name]
            try:
                out[option.name] = convert(tp, value, where, f"model.options.{option.name}")
            except TypeError:  # an annotation the converter does not know: taken as given
                out[option.name] = value
        else:
            out[option.name] = option.default
    out.update({k: v for k, v in given.items() if k not in out})  # a **kwargs model's extras
    return to_dict(out)

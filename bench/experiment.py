"""What an experiment is: a profile (dataset, model, training settings, grid) plus schedules.

Profiles are small YAML files in ``bench/profiles/`` (``quick``, ``default``, ``los-loop``,
``paper``) or any path. Command-line flags override profile fields. Everything is validated
here, before a dataset is loaded or a tensor allocated, so that a typo costs a second, not an
hour.
"""

from __future__ import annotations

import hashlib
import json
import os
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.config import ConfigError, convert, from_dict, read_yaml, suggest, to_dict
from schedules import BUILTIN, KINDS, NamedSchedule, Registry, ScheduleError
from schedules.kinds import MultiStep, Plateau
from stforecast.datasets import dataset_names, get_dataset
from stforecast.datasets.registry import is_path
from stforecast.models import get_model, model_names

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

    def __post_init__(self) -> None:
        check_budgets(self.budgets)
        check_seeds(self.seeds)
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


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """``"30,60,100"`` -> ``(30, 60, 100)``; ranges ``"5-9"`` allowed."""
    out: list[int] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        try:
            if "-" in token[1:]:
                lo, hi = token.split("-", 1)
                out += range(int(lo), int(hi) + 1)
            else:
                out.append(int(token))
        except ValueError:
            raise ConfigError(f"--{what}: expected integers like '30,60,100', "
                              f"got {text!r}") from None
    if not out:
        raise ConfigError(f"--{what}: no values in {text!r}")
    return tuple(out)


def parse_seeds(text: str) -> tuple[int, ...]:
    """A single number N means the first N seeds ``0..N-1``; a list or range means those seeds."""
    text = text.strip()
    if text.isdigit():
        n = int(text)
        if not (1 <= n <= 1000):
            raise ConfigError(f"--seeds: a count must be in [1, 1000], got {n}")
        return tuple(range(n))
    return parse_int_list(text, "seeds")


def apply_overrides(profile: Profile, *, schedules: str | None = None,
                    budgets: str | None = None, seeds: str | None = None,
                    model: str | None = None, dataset: str | None = None,
                    data_dir: str | None = None, device: str | None = None,
                    batch_size: int | None = None, jobs: int | None = None,
                    fuse: int | None = None) -> Profile:
    changes: dict[str, Any] = {}
    try:
        if schedules is not None:
            changes["schedules"] = schedules
        if budgets is not None:
            changes["budgets"] = parse_int_list(budgets, "budgets")
        if seeds is not None:
            changes["seeds"] = parse_seeds(seeds)
        if device is not None:
            changes["device"] = device
        if model is not None and model != profile.model.name:
            changes["model"] = ModelSettings(name=model)
        if dataset is not None and dataset != profile.dataset.name:
            changes["dataset"] = replace(profile.dataset, name=dataset, options={})
        if data_dir is not None:
            base = changes.get("dataset", profile.dataset)
            changes["dataset"] = replace(base, data_dir=data_dir)
        if batch_size is not None:
            changes["train"] = replace(profile.train, batch_size=batch_size)
        if jobs is not None:
            changes["jobs"] = jobs
        if fuse is not None:
            changes["fuse"] = fuse
        return replace(profile, **changes)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None


# -- validation against the registries ------------------------------------------------------
def validate_components(profile: Profile, where: str = "profile") -> Profile:
    """The profile with dataset and model checked against the registries and their options
    converted to the declared types; model options come back complete (every field of the
    model's config), which is the resolved form saved with each run."""
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
    if profile.model.name not in model_names():
        raise ConfigError(f"{where}: model.name: unknown model '{profile.model.name}'"
                          f"{suggest(profile.model.name, model_names())}; known: "
                          f"{', '.join(model_names())}")
    model_cfg = from_dict(get_model(profile.model.name).config_cls, profile.model.options,
                          where, "model.options")
    return replace(profile, dataset=replace(ds, options=options),
                   model=replace(profile.model, options=to_dict(model_cfg)))


# -- schedules from files -----------------------------------------------------------------
def schedules_from_file(path: str | Path, registry: Registry) -> list[str]:
    """Add the schedules a YAML file defines (``name: {kind: ..., lr: ..., ...}``)."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of schedule names to specs")
    added = []
    for name, body in data.items():
        where = f"{path}: {name}"
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: expected a mapping with 'kind', 'lr', ...")
        body = dict(body)
        kind = body.pop("kind", None)
        if kind not in KINDS:
            raise ConfigError(f"{where}: kind: unknown kind {kind!r}"
                              f"{suggest(str(kind), list(KINDS))}; kinds: {', '.join(KINDS)}")
        summary = body.pop("summary", f"user schedule from {path.name}")
        groups = convert(tuple[str, ...], body.pop("groups", []), str(path), f"{name}.groups")
        spec = from_dict(KINDS[kind], body, str(path), str(name))
        try:
            registry.add(NamedSchedule(str(name), spec, str(summary), ("user", *groups)))
        except ScheduleError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        added.append(str(name))
    return added


@dataclass(frozen=True)
class NoteConfig:
    """The tuning note's own config keys, run as given.

    With ``milestones`` it is the note's MultiStepLR proposal; without, the note's original
    (ReduceLROnPlateau with factor 0.5 and patience 5, stepped on the validation loss).
    """

    lr: float
    weight_decay: float = 0.0
    milestones: tuple[int, ...] | None = None
    lr_decay_rate: float = 0.1
    epochs: int | None = None
    batch_size: int | None = None


def note_config(path: str | Path, registry: Registry) -> tuple[str, NoteConfig]:
    """Register the schedule a note-style YAML file describes; return its name and config."""
    path = Path(path)
    note = from_dict(NoteConfig, read_yaml(path), str(path))
    try:
        if note.milestones:
            spec = MultiStep(lr=note.lr, weight_decay=note.weight_decay,
                             milestones=note.milestones, gamma=note.lr_decay_rate)
        else:
            spec = Plateau(lr=note.lr, weight_decay=note.weight_decay)
        name = path.stem
        registry.add(NamedSchedule(name, spec, f"as given in {path.name}", ("user",)))
    except ScheduleError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return name, note


def resolve_schedules(profile: Profile, schedule_files: list[str] = (),
                      registry: Registry | None = None) -> list[NamedSchedule]:
    """The selected schedules, each checked against every budget of the grid."""
    registry = registry if registry is not None else BUILTIN.copy()
    for f in schedule_files:
        schedules_from_file(f, registry)
    try:
        chosen = registry.select(profile.schedules)
    except ScheduleError as exc:
        raise ConfigError(f"--schedules: {exc}") from None
    for item in chosen:
        check_against_budgets(item, profile.budgets)
    return chosen


def check_against_budgets(item: NamedSchedule, budgets: tuple[int, ...]) -> None:
    spec = item.spec
    for b in budgets:
        try:
            spec.check_budget(b)
        except ScheduleError as exc:
            raise ConfigError(f"schedule '{item.name}': {exc}") from None
    milestones = getattr(spec, "milestones", None)
    # A user's file with milestones past every budget is a mistake; a built-in schedule in a
    # short grid is a finding, reported by ``budget_notes`` instead.
    user = "user" in item.groups
    if user and isinstance(milestones, tuple) and milestones[0] > max(budgets):
        raise ConfigError(f"schedule '{item.name}': milestones {list(milestones)} all lie beyond "
                          f"the longest budget ({max(budgets)} epochs), so the lr never decays")


def budget_notes(items: list[NamedSchedule], budgets: tuple[int, ...]) -> list[str]:
    """Plain-language notes on budgets in which a fixed-milestone schedule never decays."""
    notes = []
    for item in items:
        milestones = getattr(item.spec, "milestones", None)
        if not isinstance(milestones, tuple):
            continue
        for b in sorted(budgets):
            if milestones[0] >= b:
                notes.append(f"'{item.name}' never decays within the {b}-epoch budget "
                             f"(first milestone at epoch {milestones[0]}; epochs run 0-{b - 1})")
    return notes


def config_hash(payload: dict) -> str:
    """Stable short hash of a resolved run config."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

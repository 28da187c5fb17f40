"""Command-line flags of ``bench run`` applied to a profile: ``--budgets``, ``--seeds``,
``--model``, ``--model-option``, ``--dataset`` and the rest, each parsed and checked before
anything runs; and the ``bench run`` command that trains an experiment again, for its
report."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from bench.config import ConfigError
from bench.profile import ModelSettings, Profile, TuneSettings

MAX_VALUES = 1000


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """``"30,60,100"`` -> ``(30, 60, 100)``; ranges ``"5-9"`` allowed."""
    out: list[int] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        try:
            if "-" in token[1:]:
                lo, hi = (int(v) for v in token.split("-", 1))
                if hi - lo + len(out) >= MAX_VALUES:  # checked before anything is expanded
                    raise ConfigError(f"--{what}: {token} spans more than {MAX_VALUES} values")
                out += range(lo, hi + 1)
            else:
                out.append(int(token))
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"--{what}: expected integers like '30,60,100', "
                              f"got {text[:60]!r}") from None
    if not out:
        raise ConfigError(f"--{what}: no values in {text!r}")
    if len(out) > MAX_VALUES:  # a long list, or ranges that only together exceed the cap
        raise ConfigError(f"--{what}: {len(out)} values, at most {MAX_VALUES}")
    return tuple(out)


def parse_seeds(text: str) -> tuple[int, ...]:
    """A single number N means the first N seeds ``0..N-1``; a list or range means those seeds."""
    text = text.strip()
    if text.isdigit():
        n = int(text)
        if not (1 <= n <= MAX_VALUES):
            raise ConfigError(f"--seeds: a count must be in [1, {MAX_VALUES}], got {n}")
        return tuple(range(n))
    return parse_int_list(text, "seeds")


def parse_model_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["hidden=64", "dropout=0.1"]`` -> ``{"hidden": 64, "dropout": 0.1}``.

    Each value is read as YAML, as it would be in a profile (``64`` an integer, ``0.1`` a
    float, ``true`` a boolean, ``[1, 2]`` a list, anything else a string); the model's
    declared types then check it (``validate_components``)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"--model-option: expected key=value (e.g. hidden=64), got "
                              f"{pair[:60]!r}")
        if key in out:
            raise ConfigError(f"--model-option: '{key}' given twice")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError:
            out[key] = text
    return out


def apply_overrides(profile: Profile, *, schedules: str | None = None,
                    budgets: str | None = None, seeds: str | None = None,
                    model: str | None = None, model_options: list[str] | None = None,
                    dataset: str | None = None,
                    data_dir: str | None = None, device: str | None = None,
                    batch_size: int | None = None, jobs: int | None = None,
                    fuse: int | None = None, tune: bool = False) -> Profile:
    """The profile with each given flag applied; a bad value is a ``ConfigError``.

    ``--tune`` turns the tuning protocol on with the profile's ``tune`` block, or with the
    default search space (peak lr 3e-4, 1e-3, 3e-3; tuning seeds 1000, 1001) when it has none.

    ``--model`` and ``--dataset`` replace the whole model or dataset entry (their options
    belong to the profile's own model or dataset, not to the new one); ``--model-option``
    then sets options of the model that runs, over the profile's."""
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
        given = parse_model_options(model_options)
        if given:
            base = changes.get("model", profile.model)
            changes["model"] = replace(base, options={**base.options, **given})
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
        if tune and profile.tune is None:
            changes["tune"] = TuneSettings()
        return replace(profile, **changes)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None


def training_command(args, experiment: str) -> str:
    """The ``bench run`` that trains this experiment again, without its grid (the report
    adds ``--schedules``, ``--budgets`` and ``--seeds`` from the records). Paths are kept as
    given, unless absolute: then only their last part (reports travel)."""
    def path(text: str) -> str:
        return Path(text).name if Path(text).is_absolute() else text

    words = ["python", "-m", "bench", "run", "--profile", path(args.profile)]
    if args.model:
        words += ["--model", path(args.model)]
    for pair in args.model_option or []:
        words += ["--model-option", pair]
    for flag, value in (("--dataset", args.dataset), ("--data-dir", args.data_dir),
                        ("--config", args.config), ("--device", args.device),
                        ("--batch-size", args.batch_size)):
        if value is not None:
            words += [flag, path(str(value))]
    for file in args.schedule_file or []:
        words += ["--schedule-file", path(file)]
    if args.tune:
        words.append("--tune")
    words += ["--experiment", experiment]
    return shlex.join(words)

"""Command-line flags of ``bench run`` applied to a profile: ``--budgets``, ``--seeds``,
``--model``, ``--dataset`` and the rest, each parsed and checked before anything runs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

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


def apply_overrides(profile: Profile, *, schedules: str | None = None,
                    budgets: str | None = None, seeds: str | None = None,
                    model: str | None = None, dataset: str | None = None,
                    data_dir: str | None = None, device: str | None = None,
                    batch_size: int | None = None, jobs: int | None = None,
                    fuse: int | None = None, tune: bool = False) -> Profile:
    """The profile with each given flag applied; a bad value is a ``ConfigError``.

    ``--tune`` turns the tuning protocol on with the profile's ``tune`` block, or with the
    default search space (peak lr 3e-4, 1e-3, 3e-3; tuning seeds 1000, 1001) when it has none.

    ``--model`` and ``--dataset`` replace the whole model or dataset entry (their options
    belong to the profile's own model or dataset, not to the new one)."""
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
        if tune and profile.tune is None:
            changes["tune"] = TuneSettings()
        return replace(profile, **changes)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None

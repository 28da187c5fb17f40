"""Which schedules an experiment trains: the registry, ``--schedule-file`` additions and
``--schedules`` selection, each checked against every budget of the grid."""

from __future__ import annotations

from pathlib import Path

from bench.config import ConfigError, convert, from_dict, read_yaml, suggest
from bench.profile import Profile
from schedules import BUILTIN, KINDS, NamedSchedule, Registry, ScheduleError


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
    # A user's file with milestones past every budget is a mistake; a built-in schedule in a
    # short grid is a finding, reported by ``budget_notes`` instead.
    if "user" in item.groups and never_decays(spec, max(budgets)):
        raise ConfigError(f"schedule '{item.name}': milestones {list(spec.milestones)} all lie "
                          f"at or beyond the longest budget ({max(budgets)} epochs, numbered "
                          f"0-{max(budgets) - 1}), so the lr never decays")


def never_decays(spec, budget: int) -> bool:
    """Whether a fixed-milestone schedule keeps its base lr through a whole budget: epochs
    run 0..budget-1 and MultiStepLR first decays at its first milestone."""
    milestones = getattr(spec, "milestones", None)
    return isinstance(milestones, tuple) and milestones[0] >= budget


def budget_notes(items: list[NamedSchedule], budgets: tuple[int, ...]) -> list[str]:
    """Plain-language notes on budgets in which a fixed-milestone schedule never decays."""
    notes = []
    for item in items:
        for b in sorted(budgets):
            if never_decays(item.spec, b):
                notes.append(f"'{item.name}' never decays within the {b}-epoch budget "
                             f"(first milestone at epoch {item.spec.milestones[0]}; epochs "
                             f"run 0-{b - 1})")
    return notes

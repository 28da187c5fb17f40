"""The tuning note's own config keys (``lr``, ``weight_decay``, ``milestones``,
``lr_decay_rate``, ``epochs``, ``batch_size``) run as given with ``bench run --config FILE``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.config import ConfigError, from_dict, read_yaml
from schedules import NamedSchedule, Registry, ScheduleError
from schedules.kinds import MultiStep, Plateau


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

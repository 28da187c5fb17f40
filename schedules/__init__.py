"""The varied treatment: named learning-rate schedules that build genuine torch schedulers."""

from schedules.kinds import KINDS, Schedule, ScheduleError
from schedules.registry import BUILTIN, NamedSchedule, Registry

__all__ = ["BUILTIN", "KINDS", "NamedSchedule", "Registry", "Schedule", "ScheduleError"]

"""Named schedules and groups of them.

A registry maps a name to a ``NamedSchedule``: a frozen kind spec plus a one-line summary and
the groups it belongs to. ``all`` is every registered schedule, ``seed`` the three of the
tuning note being tested, ``ablation`` the 2 x 2 that separates the note's schedule change
from its lr and weight-decay change. Unknown and duplicate names raise.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from schedules.kinds import (
    Constant,
    MultiStep,
    MultiStepScaled,
    OneCycle,
    Plateau,
    Schedule,
    ScheduleError,
    ScheduleFree,
    WarmupCosine,
    WarmupStableDecay,
)


@dataclass(frozen=True)
class NamedSchedule:
    name: str
    spec: Schedule
    summary: str
    groups: tuple[str, ...] = ()

    @property
    def budget_dependent(self) -> bool:
        return self.spec.budget_dependent


class Registry:
    """An ordered name -> schedule map; copies are cheap, so a run can add its own."""

    def __init__(self, items: Iterable[NamedSchedule] = ()) -> None:
        self._items: dict[str, NamedSchedule] = {}
        for item in items:
            self.add(item)

    def add(self, item: NamedSchedule) -> None:
        why = name_problem(item.name)
        if why is not None:
            raise ScheduleError(f"schedule name {item.name[:80]!r} {why}")
        if item.name in self._items or item.name in self.groups():
            raise ScheduleError(f"schedule '{item.name}' is already registered")
        self._items[item.name] = item

    def copy(self) -> Registry:
        return Registry(self._items.values())

    def names(self) -> list[str]:
        return list(self._items)

    def __iter__(self):
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def get(self, name: str) -> NamedSchedule:
        if name not in self._items:
            raise ScheduleError(f"unknown schedule '{name}'{_suggest(name, self.names())}; "
                                f"known: {', '.join(self.names())}")
        return self._items[name]

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"all": list(self._items)}
        for item in self._items.values():
            for g in item.groups:
                out.setdefault(g, []).append(item.name)
        return out

    def select(self, selection: str) -> list[NamedSchedule]:
        """Resolve ``all``, a group name, or a comma list of names and groups, in order."""
        groups = self.groups()
        chosen: list[str] = []
        for token in (t.strip() for t in selection.split(",")):
            if not token:
                continue
            if token in groups:
                names = groups[token]
            elif token in self._items:
                names = [token]
            else:
                known = self.names() + list(groups)
                raise ScheduleError(f"unknown schedule or group '{token}'"
                                    f"{_suggest(token, known)}; groups: {', '.join(groups)}")
            chosen += [n for n in names if n not in chosen]
        if not chosen:
            raise ScheduleError("no schedule selected")
        return [self._items[n] for n in chosen]


NAME_SEPARATORS = ",/\\ \t\n"
NAME_FORBIDDEN = "|`"     # would break a markdown table or code span
NAME_LEADING = "=+-@"     # a spreadsheet would run a cell that begins with one of these


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a schedule, or None. A name becomes a folder of every results
    folder and a cell of every table, so it is plain text: not empty, not ``.`` or ``..``,
    without commas, slashes or spaces, control characters (CR included), table pipes or
    backticks, and not beginning with ``= + - @``."""
    if not isinstance(name, str) or not name:
        return "must be non-empty without commas, slashes or spaces"
    if any(c in name for c in NAME_SEPARATORS):
        return "must be non-empty without commas, slashes or spaces"
    if not name.isprintable():
        return "must not hold control or other invisible characters"
    if name in (".", ".."):
        return "must not be '.' or '..'"
    if any(c in name for c in NAME_FORBIDDEN):
        return "must not hold '|' or '`'"
    if name[0] in NAME_LEADING:
        return "must not begin with =, +, - or @"
    return None


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


BUILTIN = Registry([
    NamedSchedule("plateau", Plateau(lr=5e-4, factor=0.5, patience=5),
                  "the note's original: ReduceLROnPlateau on validation loss, Adam lr 5e-4",
                  ("seed", "ablation")),
    NamedSchedule("multistep", MultiStep(lr=1e-3, weight_decay=5e-4, milestones=(30, 60, 90),
                                         gamma=0.1),
                  "the note's proposal: MultiStepLR at epochs 30/60/90, Adam lr 1e-3 wd 5e-4",
                  ("seed", "ablation")),
    NamedSchedule("warmup_cosine", WarmupCosine(lr=1e-3, weight_decay=5e-4),
                  "linear warmup then cosine decay to a floor over the run's own budget",
                  ("seed",)),
    NamedSchedule("constant", Constant(lr=1e-3, weight_decay=5e-4),
                  "the control: constant lr 1e-3, wd 5e-4 (the note's optimizer, no decay)"),
    NamedSchedule("multistep_scaled", MultiStepScaled(lr=1e-3, weight_decay=5e-4),
                  "MultiStepLR with milestones at 30/60/90 % of the budget (decays in any "
                  "budget)"),
    NamedSchedule("plateau_lr1e-3_wd5e-4", Plateau(lr=1e-3, weight_decay=5e-4),
                  "ablation: the original Plateau schedule with the proposal's lr and wd",
                  ("ablation",)),
    NamedSchedule("multistep_lr5e-4_wd0", MultiStep(lr=5e-4, milestones=(30, 60, 90)),
                  "ablation: the proposal's MultiStepLR with the original lr and no wd",
                  ("ablation",)),
    NamedSchedule("onecycle", OneCycle(lr=2e-3, weight_decay=5e-4),
                  "OneCycleLR: cosine up to 2e-3 over 30 % of steps, then down to 8e-9"),
    NamedSchedule("wsd", WarmupStableDecay(lr=1e-3, weight_decay=5e-4),
                  "warmup-stable-decay: 5-epoch warmup, constant, linear decay over last 20 %"),
    NamedSchedule("linear_decay", WarmupStableDecay(lr=1e-3, weight_decay=5e-4,
                                                    warmup_epochs=0, decay_fraction=1.0),
                  "linear decay from 1e-3 to 0 over the whole budget"),
    NamedSchedule("schedulefree", ScheduleFree(lr=1e-3, weight_decay=5e-4),
                  "schedule-free AdamW (iterate averaging, no decay), 5-epoch warmup"),
])

"""The settings a report is judged under: the reference schedule and the equivalence margin.

They are declared in the profile (``report: {reference: plateau, margin: 0.02}``) before any
result exists, and ``bench run`` records them in the experiment folder as ``report.json``, so
that ``bench report`` run later, with no profile at hand, reaches the same verdicts.
``--reference`` and ``--margin`` on the command line override the record for one report,
and the report's regenerate command repeats them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from bench.config import ConfigError
from bench.report.markdown import code
from bench.report.stats import ALPHA, MARGIN, margin_text
from bench.store import StoreError, atomic_write_json

REPORT_FILE = "report.json"
DEFAULT_REFERENCE = "plateau"


@dataclass(frozen=True)
class Judging:
    """How one report judges: against ``reference``, equivalent within ±``margin``."""

    reference: str = DEFAULT_REFERENCE
    margin: float = MARGIN
    alpha: float = ALPHA
    profile: str | None = None    # the profile that declared them (its name), if recorded
    source: str = "default"       # "recorded" | "command line" | "default"

    def caption(self) -> str:
        """Where the settings come from, in words, for the report's setup section."""
        named = f" {code(self.profile)}" if self.profile else ""
        where = {"recorded": f"declared in the profile{named} and recorded in the results "
                             f"folder ({REPORT_FILE})",
                 "command line": "set on the command line",
                 "default": f"the defaults (the results folder records none: no {REPORT_FILE})"
                 }[self.source]
        return (f"reference {code(self.reference)}, equivalence margin ±{margin_text(self.margin)} "
                f"on the MAE ratio, family-wise α = {self.alpha:g}; {where}")


def _valid_margin(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0 < value < 0.5)


def _valid_name(value) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= 100 and value.isprintable()
            and "/" not in value and "\\" not in value)


def read_judging(exp_dir: Path) -> Judging:
    """The settings recorded in ``exp_dir`` (checked: a results folder is untrusted input),
    or the defaults when none are recorded."""
    path = Path(exp_dir) / REPORT_FILE
    if not path.exists():
        return Judging()
    bad = ConfigError(f"{path}: not a report settings record (reference, margin); move it "
                      "aside or run 'python -m bench run' again to rewrite it")
    try:
        if path.stat().st_size > 10_000:
            raise bad
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        raise bad from None
    if not (isinstance(record, dict) and _valid_name(record.get("reference"))
            and _valid_margin(record.get("margin"))
            and (record.get("profile") is None or _valid_name(record.get("profile")))):
        raise bad
    return Judging(record["reference"], float(record["margin"]), profile=record.get("profile"),
                   source="recorded")


def resolve_judging(exp_dir: Path, reference: str | None = None,
                    margin: float | None = None) -> Judging:
    """The recorded settings with the command line's overrides applied."""
    judging = read_judging(exp_dir)
    if margin is not None and not _valid_margin(margin):
        raise ConfigError(f"--margin {margin}: must be in (0, 0.5), e.g. 0.02 for ±2 %")
    if reference is not None and not _valid_name(reference):
        raise ConfigError(f"--reference {reference!r}: not a schedule name")
    if margin is None and reference is None:
        return judging
    return Judging(reference or judging.reference,
                   judging.margin if margin is None else float(margin),
                   profile=judging.profile, source="command line")


def record_judging(exp_dir: Path, reference: str, margin: float, profile: str | None
                   ) -> str | None:
    """Write ``report.json``; a note when it replaces other settings (the report then judges
    by the new ones)."""
    exp_dir = Path(exp_dir)
    record = {"reference": reference, "margin": margin,
              "profile": profile if profile and _valid_name(profile) else None}
    note = None
    try:
        old = read_judging(exp_dir)
    except ConfigError:
        old = None
    if old is not None and old.source == "recorded":
        if (old.reference, old.margin) == (reference, margin):
            if old.profile == record["profile"]:
                return None
        else:
            note = (f"report settings changed from reference {old.reference}, margin "
                    f"{margin_text(old.margin)} to reference {reference}, margin "
                    f"{margin_text(margin)}: the report judges by the new ones")
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create results folder {exp_dir}: {exc.strerror or exc}") \
            from exc
    atomic_write_json(exp_dir / REPORT_FILE, record)
    return note

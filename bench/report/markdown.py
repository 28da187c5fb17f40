"""Markdown and number formatting shared by the report, the regression check and perf.

Text read from a results folder (schedule, experiment, dataset and model names, settings
text) is untrusted: it enters markdown only through ``md_text`` (usually as ``code``) and a
CSV cell only through ``csv_text``.
"""

from __future__ import annotations

import math

from bench import escape
from bench.report.stats import mean_std, pct  # noqa: F401  (pct: one spelling of a change)


def md_text(text) -> str:
    """Text from a results folder made safe inside a markdown line or table cell
    (``bench.escape.md_text``: no tag, link, image, heading or cell boundary can come from
    it; the length is bounded)."""
    return escape.md_text(text)


def code(text, limit: int = escape.MAX_CHARS) -> str:
    """A name from a results folder as inline code: `` `plateau` `` (``bench.escape.md_code``:
    shown literally, whatever it holds)."""
    return escape.md_code(text, limit)


def codes(names) -> str:
    """Merged names (identical runs) as one label: `` `multistep` = `constant` ``."""
    return " = ".join(code(n) for n in names)


def csv_text(text) -> str:
    """Text from a results folder as a CSV cell that no spreadsheet runs as a formula."""
    return escape.csv_cell(escape.visible(text))


def md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join(marks[a] for a in align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def f3(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def pm(values) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    m, s = mean_std(values)
    return f"{m:.3f} ± {s:.3f}" if len(values) > 1 else f"{m:.3f}"


def p_text(p: float | None, exact: bool = True) -> str:
    """A p-value to three significant digits; ≈ where it comes from random sign patterns."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return ("" if exact else "≈") + (f"{p:.2g}" if p < 0.001 else f"{p:.3g}")


def lr_text(x: float) -> str:
    return f"{x:.2g}" if x else "0"


def duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"

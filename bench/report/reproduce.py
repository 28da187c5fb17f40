"""The report's last word: which code made the numbers and the command that trains them
again.

From ``experiment.json``: the model's file and every other file of the user's that its
import loaded, each with its sha256 (the versions the experiment's identity holds), the
installed packages those files import, with their versions, and the ``bench run`` that
trained the experiment, completed with the grid the records hold. Pure text; everything read
from the results folder is made inert (``safe_text``).
"""

from __future__ import annotations

import shlex

from bench.report.diverged import safe_text
from bench.report.results import Results, tuned_order

_HEX = set("0123456789abcdef")


def _digest(value: object) -> str:
    text = str(value)
    return text[:12] if len(text) == 64 and set(text) <= _HEX else "?"


def code_lines(model: dict) -> list[str]:
    """The model's files and packages, one bullet each kind."""
    import_path = safe_text(model.get("import_path") or model.get("name") or "?")
    origin = safe_text(model.get("origin", ""))
    sha = model.get("source_sha256")
    if origin == "file":
        file = import_path.rpartition(":")[0] or import_path
        head = (f"- **Model code**: `{file}` (sha256 `{_digest(sha)}`), imported with its own "
                f"folder importable, as `python {file}` would have it")
    else:
        head = (f"- **Model code**: `{import_path}` ({origin or 'built-in'}"
                + (f", sha256 `{_digest(sha)}`" if sha else "") + ")")
    lines = [head]
    sources = model.get("sources")
    if isinstance(sources, dict) and sources:
        listed = ", ".join(f"`{safe_text(k, 120)}` (`{_digest(v)}`)"
                           for k, v in list(sources.items())[:50])
        more = f" and {len(sources) - 50} more" if len(sources) > 50 else ""
        lines.append(f"- **Other files its import loaded** (each part of the experiment's "
                     f"identity: an edit makes the runs stale): {listed}{more}")
    packages = model.get("packages")
    if isinstance(packages, dict) and packages:
        listed = ", ".join(f"{safe_text(k, 80)} {safe_text(v, 40)}"
                           for k, v in list(packages.items())[:50])
        lines.append(f"- **Installed packages its files import**: {listed}")
    return lines


def training_command(res: Results) -> str | None:
    """The recorded ``bench run`` with the grid of the records: schedules, budgets, seeds.

    In a tuned experiment the schedules are the ones tuned (``--schedules`` names those, and
    the run tunes each again before evaluating) and the seeds are the evaluation seeds."""
    command = res.experiment.get("command")
    if not isinstance(command, str) or not command.startswith("python -m bench run "):
        return None
    schedules = ",".join(tuned_order(res) if res.tuning else res.schedule_order)
    if not schedules:
        return None
    return (command + " " + shlex.join(["--schedules", schedules, "--budgets",
                                        ",".join(map(str, res.budgets)), "--seeds",
                                        ",".join(map(str, res.seeds))]))


def reproduce_section(res: Results) -> str:
    """``## Reproduce``: the model's code, and the command that trains the experiment."""
    model = res.experiment.get("model") if isinstance(res.experiment, dict) else None
    lines = code_lines(model) if isinstance(model, dict) and model else []
    command = training_command(res)
    if command:
        lines.append(f"- **Train again** (runs already finished are skipped): "
                     f"`{safe_text(command, 1000)}`")
    if not lines:
        return ""
    return "## Reproduce\n\n" + "\n".join(lines)

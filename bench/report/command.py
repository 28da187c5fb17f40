"""Writing a report: ``report.md`` and its figures into ``<out>/<experiment>/``.

A report always renders or says why: an experiment in which every run diverged gets a report
that says so first and ranks nothing (``bench.report.diverged``), one in which no run has
finished an epoch (only registered) a short report that says so, and a bad ``--out`` is one
line (exit 2). Every full report ends with the model's code and the command that trains the
experiment again (``bench.report.reproduce``)."""


from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from bench.config import ConfigError
from bench.escape import terminal
from bench.report.diverged import DIVERGED_NOTE, diverged_report, every_run_diverged
from bench.report.figures import write_figures
from bench.report.markdown import md_table
from bench.report.reproduce import reproduce_section
from bench.report.results import Results, load_results
from bench.report.sections import render
from bench.store import StoreError, atomic_write_text


def write_report(exp_dir: Path, out_dir: Path, notes: list[str] | None = None) -> Path:
    """Write the report; ``notes`` collects what reading the results found (see
    ``load_results``)."""
    res = load_results(exp_dir, notes)
    target = out_dir / res.name
    _make_folder(target)
    if every_run_diverged(res):  # first: nothing to rank, whether or not epochs exist
        path = target / "report.md"
        text = diverged_report(res, exp_dir, regenerate_command(exp_dir, out_dir))
        atomic_write_text(path, text + _appended(reproduce_section(res)))
        if notes is not None:
            notes.append(DIVERGED_NOTE)
        return path
    if res.epochs.empty:
        path = target / "report.md"
        atomic_write_text(path, no_epoch_report(res))
        if notes is not None:
            notes.append(NO_EPOCH_NOTE)
        return path
    figures = write_figures(res, target)
    path = target / "report.md"
    text = render(res, figures, regenerate_command(exp_dir, out_dir))
    atomic_write_text(path, text + _appended(reproduce_section(res)))
    return path


def _appended(section: str) -> str:
    return f"\n{section}\n" if section else ""


def regenerate_command(exp_dir: Path, out_dir: Path) -> str:
    """The command that writes this report again, from the folder it was run in. Paths are
    relative to that folder; a folder outside it is named by its last part only (run from
    its parent), so the report names no folder of the machine that made it."""
    def rel(path: Path) -> str:
        text = os.path.relpath(Path(path).resolve(), Path.cwd())
        return shlex.quote(Path(path).resolve().name if text.startswith("..") else text)

    return (f"python -m bench report --results {rel(exp_dir.parent)} --experiment "
            f"{shlex.quote(exp_dir.name)} --out {rel(out_dir)}")


NO_EPOCH_NOTE = "no run has finished an epoch: the report says so, without figures"


def _make_folder(folder: Path, flag: str = "--out") -> None:
    """Create the folder a report is written into; one line (exit 2) for anything unusable:
    a file on the way, a name too long, no permission."""
    try:
        for part in (folder, *folder.parents):
            if part.exists() and not part.is_dir():
                raise ConfigError(f"{flag}: {part} is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
    except ConfigError:
        raise
    except OSError as exc:
        raise StoreError(f"cannot create report folder {folder}: {exc.strerror or exc}") \
            from None


def no_epoch_report(res: Results) -> str:
    """The report of an experiment in which no run has finished an epoch: what each cell's
    state is, and no figures (there is nothing to draw)."""
    summary = res.summary
    counts = summary["status"].value_counts()
    rows = [[status, str(int(n))] for status, n in counts.items()]
    lines = [f"# {res.name}: no finished epoch yet", "",
             f"No run of experiment `{res.name}` has finished an epoch, so there are no curves, "
             f"tables or comparisons to report. The grid holds {len(summary)} cells "
             f"(schedule × budget × seed):", "", md_table(["status", "cells"], rows, "lr"), ""]
    diverged = summary[summary["status"] == "diverged"]
    if len(diverged):
        lines += ["Diverged (a non-finite or exploding training loss; lower the lr or raise "
                  "`train.divergence_factor`):", ""]
        lines += [f"- `{r.schedule}`, {int(r.budget)} epochs, seed {int(r.seed)}: at epoch "
                  f"{'?' if r.diverged_epoch != r.diverged_epoch else int(r.diverged_epoch)}"
                  for r in diverged.itertuples()]
        lines.append("")
    if (summary["status"] == "missing").any():
        lines += ["Cells marked `missing` have not been started (for example registered by "
                  "`--shard`, or waiting for another shard); `python -m bench run` with the same "
                  "settings trains them.", ""]
    return "\n".join(lines)


def cmd_report(args) -> int:
    out = Path(args.out)
    try:
        is_file = out.exists() and not out.is_dir()
    except OSError as exc:
        raise ConfigError(f"--out {out}: unusable ({exc.strerror or exc})") from None
    if is_file:
        raise ConfigError(f"--out {out}: is a file, not a folder")
    notes: list[str] = []
    try:
        path = write_report(Path(args.results) / args.experiment, out, notes)
    finally:
        for note in notes:
            print(f"note: {terminal(note, 1000)}", file=sys.stderr)
    print(f"wrote {path}" + ("" if {NO_EPOCH_NOTE, DIVERGED_NOTE} & set(notes)
                             else " and its figures"), file=sys.stderr)
    return 0

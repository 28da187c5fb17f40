"""Writing a report: ``report.md``, ``per_seed.csv`` and the figures into
``<out>/<experiment>/``.

A report always renders or says why: an experiment in which every run diverged gets a report
that says so first and ranks nothing (``bench.report.diverged``), one in which no run has
finished an epoch (only registered) a short report that says so, and a bad ``--out`` is one
line (exit 2). Every full report ends with the model's code and the command that trains the
experiment again (``bench.report.reproduce``). The report is judged under the settings
recorded in the results folder (``bench.report.settings``), so it regenerates byte for byte
from the same records."""


from __future__ import annotations

import csv
import io
import os
import shlex
import sys
from pathlib import Path

from bench.config import ConfigError
from bench.escape import terminal
from bench.report.diverged import DIVERGED_NOTE, diverged_report, every_run_diverged
from bench.report.figures import write_figures
from bench.report.markdown import code, csv_text, md_table, md_text
from bench.report.reproduce import reproduce_section
from bench.report.results import Results, load_results
from bench.report.sections import render
from bench.report.settings import Judging, resolve_judging
from bench.report.verdicts import headline_view
from bench.store import StoreError, atomic_write_text

PER_SEED_COLUMNS = ["schedule", "setting", "budget", "seed", "final_val_mae",
                    "final_test_mae", "best_val_epoch_test_mae"]


def write_report(exp_dir: Path, out_dir: Path, notes: list[str] | None = None,
                 reference: str | None = None, margin: float | None = None) -> Path:
    """Write the report; ``notes`` collects what reading the results found (see
    ``load_results``); ``reference`` and ``margin`` override the recorded settings."""
    exp_dir = Path(exp_dir)
    judging = resolve_judging(exp_dir, reference, margin)
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
    figures = write_figures(res, target, headline_view(res))
    atomic_write_text(target / "per_seed.csv", per_seed_csv([("", res)]))
    path = target / "report.md"
    text = render(res, figures, regenerate_command(exp_dir, out_dir, judging), judging)
    atomic_write_text(path, text + _appended(reproduce_section(res)))
    return path


def _appended(section: str) -> str:
    return f"\n{section}\n" if section else ""


def per_seed_rows(res: Results) -> list[dict]:
    """Every finished evaluation run's numbers, one row per (schedule, setting, budget,
    seed): ``own`` settings, and in a tuned experiment each schedule's chosen setting
    (``tuned (lr 0.003)``), from which every verdict can be recomputed."""
    df = res.finished()
    rows = []

    def add(schedule: str, setting: str, budget: int, run_name: str) -> None:
        d = df[(df["schedule"] == run_name) & (df["budget"] == budget)].sort_values("seed")
        for _, r in d.iterrows():
            rows.append({"schedule": schedule, "setting": setting, "budget": budget,
                         "seed": int(r["seed"]), "final_val_mae": repr(float(r["val_mae"])),
                         "final_test_mae": repr(float(r["test_mae"])),
                         "best_val_epoch_test_mae": repr(float(r["best_test_mae"]))})

    chosen = res.tuning.get("schedules", {}) if res.tuning else {}
    settings = res.tuning.get("settings", {}) if res.tuning else {}
    names = [s for s in res.order if s in chosen or s in res.schedule_order]
    names += [s for s in chosen if s not in names]  # own settings never trained
    for b in res.budgets:
        for s in names:
            entry = chosen.get(s, {}).get(str(b)) if isinstance(chosen.get(s), dict) else None
            if isinstance(entry, dict) and isinstance(entry.get("chosen"), str):
                point = settings.get(entry["chosen"], {})
                words = ", ".join(f"{k.replace('weight_decay', 'wd')} {point[k]:g}"
                                  for k in ("lr", "weight_decay")
                                  if isinstance(point.get(k), (int, float)))
                add(s, f"tuned ({words})", b, entry["chosen"])
            if s in res.schedule_order:
                add(s, "own", b, s)
    return rows


def per_seed_csv(results: list[tuple[str, Results]]) -> str:
    """``per_seed.csv``: the rows of each experiment (with an ``experiment`` column first
    when there are several)."""
    several = len(results) > 1 or any(name for name, _ in results)
    columns = (["experiment"] if several else []) + PER_SEED_COLUMNS
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    for name, res in results:
        for row in per_seed_rows(res):
            row = {**row, "schedule": csv_text(row["schedule"])}
            writer.writerow({"experiment": csv_text(name), **row} if several else row)
    return buf.getvalue()


def relative(path: Path) -> str:
    """``path`` for a command printed in a report: relative to the folder the command runs
    in, or its last part only when it lies outside (run from its parent), so the report names
    no folder of the machine that made it; quoted for a shell."""
    text = os.path.relpath(Path(path).resolve(), Path.cwd())
    return shlex.quote(Path(path).resolve().name if text.startswith("..") else text)


def regenerate_command(exp_dir: Path, out_dir: Path, judging: Judging | None = None) -> str:
    """The command that writes this report again, from the folder it was run in (paths as
    ``relative`` gives them). Settings given on the command line are repeated."""
    extra = ""
    if judging is not None and judging.source == "command line":
        extra = f" --reference {shlex.quote(judging.reference)} --margin {judging.margin:g}"
    return (f"python -m bench report --results {relative(exp_dir.parent)} --experiment "
            f"{shlex.quote(exp_dir.name)} --out {relative(out_dir)}{extra}")


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
    rows = [[md_text(status), str(int(n))] for status, n in counts.items()]
    lines = [f"# {md_text(res.name)}: no finished epoch yet", "",
             f"No run of experiment {code(res.name)} has finished an epoch, so there are no "
             f"curves, tables or comparisons to report. The grid holds {len(summary)} cells "
             f"(schedule × budget × seed):", "", md_table(["status", "cells"], rows, "lr"), ""]
    diverged = summary[summary["status"] == "diverged"]
    if len(diverged):
        lines += ["Diverged (a non-finite or exploding training loss; lower the lr or raise "
                  "`train.divergence_factor`):", ""]
        lines += [f"- {code(r.schedule)}, {int(r.budget)} epochs, seed {int(r.seed)}: at "
                  f"epoch {'?' if r.diverged_epoch != r.diverged_epoch else int(r.diverged_epoch)}"
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
        path = write_report(Path(args.results) / args.experiment, out, notes,
                            getattr(args, "reference", None), getattr(args, "margin", None))
    finally:
        for note in notes:
            print(f"note: {terminal(note, 1000)}", file=sys.stderr)
    print(f"wrote {path}" + ("" if {NO_EPOCH_NOTE, DIVERGED_NOTE} & set(notes)
                             else ", per_seed.csv and its figures"), file=sys.stderr)
    return 0

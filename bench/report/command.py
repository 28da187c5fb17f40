"""Writing a report: ``report.md`` and its figures into ``<out>/<experiment>/``."""


from __future__ import annotations

import sys
from pathlib import Path

from bench.report.figures import write_figures
from bench.report.results import load_results
from bench.report.sections import render
from bench.store import atomic_write_text


def write_report(exp_dir: Path, out_dir: Path) -> Path:
    res = load_results(exp_dir)
    target = out_dir / res.name
    figures = write_figures(res, target)
    path = target / "report.md"
    atomic_write_text(path, render(res, figures))
    return path


def cmd_report(args) -> int:
    path = write_report(Path(args.results) / args.experiment, Path(args.out))
    print(f"wrote {path} and its figures", file=sys.stderr)
    return 0

"""``python -m bench check``: the regression gate on final test MAE.

A baseline is a small CSV, one row per (schedule, budget): the number of seeds, the mean
final test MAE over them and its spread over seeds. Each row becomes a ``Check`` whose
``fails(current)`` returns the reason it fails or None, so the rule is data, not a code path:
every failure is printed, then one exit code. A current result better than the baseline never
fails.

A cell fails when its mean is worse than the baseline's by more than the tolerance plus one
standard error of the difference of two n-seed means (``std * sqrt(2 / n)``, from the
baseline's seed spread). Float results differ slightly between CPU models (different kernels),
and in cells where training is chaotic, such as a constant lr long after the best epoch, that
difference grows to the size of a fresh seed; the allowance keeps such cells from failing on
another machine while cells with a small spread are held to the tolerance.

A result cell the baseline lacks (a schedule or budget added since) is listed as "not in
baseline" and fails nothing. The results' ``epochs.csv`` and ``summary.csv`` are rebuilt from
the run folders before they are compared (``bench.report.results.load_results``).

The gate cannot pass vacuously: a baseline is validated as strictly as a profile (plain
schedule names, budgets and seed counts in range, a finite positive MAE and a finite spread
no larger than n non-negative values allow, ``mean * sqrt(n)``, in every row), else exit 2;
a check that compared no finished result exits 1.
"""

from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import ConfigError
from bench.escape import terminal
from bench.profile import MAX_BUDGET
from bench.report.markdown import md_table
from bench.report.results import load_results
from bench.safe_files import name_problem, read_bytes
from bench.store import atomic_write_text, rows_to_csv, short_repr

BASELINE_COLUMNS = ["schedule", "budget", "seeds", "test_mae"]
NOT_IN_BASELINE = "not in baseline"
SPREAD_COLUMN = "test_mae_std"  # optional: a baseline without it is held to the tolerance alone


@dataclass(frozen=True)
class Check:
    schedule: str
    budget: int
    baseline: float
    tolerance: float
    noise: float = 0.0  # absolute MAE: one standard error of the difference of two means

    @property
    def limit(self) -> float:
        return self.baseline * (1 + self.tolerance) + self.noise

    def fails(self, current: float | None) -> str | None:
        if current is None or math.isnan(current):
            return f"{self.schedule} @ {self.budget} epochs: no finished result"
        if current > self.limit:
            change = current / self.baseline - 1
            return (f"{self.schedule} @ {self.budget} epochs: test MAE {current:.4f} is "
                    f"{100 * change:+.2f} % against baseline {self.baseline:.4f} "
                    f"(tolerance {100 * self.tolerance:.1f} %"
                    + (f" + seed noise {self.noise:.4f}" if self.noise else "") + ")")
        return None


def current_means(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean final test MAE and seed count per (schedule, budget); unfinished cells -> NaN."""
    df = summary.copy()
    df.loc[df["status"] != "finished", "test_mae"] = float("nan")
    g = df.groupby(["schedule", "budget"], sort=True)
    out = g["test_mae"].agg(lambda v: v.mean() if v.notna().all() else float("nan"))
    std = g["test_mae"].agg(lambda v: v.std() if v.notna().all() and len(v) > 1 else 0.0)
    return pd.DataFrame({"seeds": g["seed"].nunique(), "test_mae": out,
                         SPREAD_COLUMN: std}).reset_index()


MAX_SEEDS = 1000  # as many as --seeds accepts


def read_baseline(path: Path) -> pd.DataFrame:
    """A baseline file, every row checked (see the module doc); else ``ConfigError``."""
    try:
        raw = read_bytes(path, "baselines", follow=True)
    except FileNotFoundError:
        raise ConfigError(f"{path}: baseline file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: unreadable baseline ({exc.strerror or exc})") from None
    try:
        # "schedule, budget, ..." reads too; names stay text
        df = pd.read_csv(io.BytesIO(raw), skipinitialspace=True, dtype={"schedule": str})
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: malformed baseline ({terminal(exc, 200)})") from None
    missing = [c for c in BASELINE_COLUMNS if c not in df.columns]
    if missing:
        raise ConfigError(f"{path}: malformed baseline, missing column(s) {', '.join(missing)}; "
                          f"expected {', '.join(BASELINE_COLUMNS)}")
    if df.empty:
        raise ConfigError(f"{path}: baseline holds no rows")
    if df[["budget", "seeds", "test_mae"]].isna().any().any():
        raise ConfigError(f"{path}: malformed baseline, empty or non-numeric values")
    try:
        for col in ("budget", "seeds"):
            values = pd.to_numeric(df[col], errors="raise").astype(float)
            if not (np.isfinite(values) & (values == np.round(values))
                    & (values.abs() < 2**31)).all():
                raise ValueError(f"{col} must be whole numbers")
            df[col] = values.astype(int)
        df["test_mae"] = pd.to_numeric(df["test_mae"], errors="raise").astype(float)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{path}: malformed baseline, non-numeric values "
                          f"({terminal(exc, 120)})") from None
    if SPREAD_COLUMN in df.columns:
        spread = pd.to_numeric(df[SPREAD_COLUMN], errors="coerce")
        if spread.isna().any() or (spread < 0).any() or not np.isfinite(spread).all():
            raise ConfigError(f"{path}: malformed baseline, {SPREAD_COLUMN} must be a finite "
                              "number >= 0 in every row")
        df[SPREAD_COLUMN] = spread
    else:
        df[SPREAD_COLUMN] = 0.0
    if (df["test_mae"] <= 0).any() or not np.isfinite(df["test_mae"]).all():
        raise ConfigError(f"{path}: malformed baseline, test_mae must be positive and finite "
                          "in every row")
    for r in df.itertuples():
        where = f"{path}: malformed baseline, row {terminal(r.schedule, 60)}@{r.budget}"
        why = name_problem(r.schedule)
        if why is not None:
            raise ConfigError(f"{path}: malformed baseline, schedule {short_repr(r.schedule)} "
                              f"is not a plain name ({why})")
        if not (1 <= r.budget <= MAX_BUDGET):
            raise ConfigError(f"{where}: budget must be in [1, {MAX_BUDGET}]")
        if not (1 <= r.seeds <= MAX_SEEDS):
            raise ConfigError(f"{where}: seeds must be in [1, {MAX_SEEDS}]")
        bound = r.test_mae * math.sqrt(r.seeds)
        if getattr(r, SPREAD_COLUMN) > bound:
            raise ConfigError(
                f"{where}: {SPREAD_COLUMN} {getattr(r, SPREAD_COLUMN):.4g} is more than "
                f"{r.seeds} non-negative values with mean {r.test_mae:.4g} can spread "
                f"({bound:.4g})")
    if df.duplicated(["schedule", "budget"]).any():
        raise ConfigError(f"{path}: malformed baseline, a (schedule, budget) appears twice")
    return df


def compare(baseline: pd.DataFrame, current: pd.DataFrame, tolerance: float, where: Path
            ) -> tuple[list[list[str]], list[str]]:
    """Table rows and failure reasons; a grid mismatch is a ``ConfigError``."""
    cur = {(r.schedule, int(r.budget)): r for r in current.itertuples()}
    missing = [f"{r.schedule}@{r.budget}" for r in baseline.itertuples()
               if (r.schedule, int(r.budget)) not in cur]
    if missing:
        raise ConfigError(f"{where}: baseline describes a different grid; the results lack "
                          f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    seeds = [f"{r.schedule}@{r.budget} ({r.seeds} vs {cur[(r.schedule, int(r.budget))].seeds})"
             for r in baseline.itertuples() if cur[(r.schedule, int(r.budget))].seeds != r.seeds]
    if seeds:
        raise ConfigError(f"{where}: baseline describes a different grid; seed counts differ "
                          f"for {', '.join(seeds[:6])}")
    rows, failures = [], []
    for r in baseline.itertuples():
        noise = float(getattr(r, SPREAD_COLUMN)) * math.sqrt(2 / r.seeds)
        check = Check(r.schedule, int(r.budget), float(r.test_mae), tolerance, noise)
        now = float(cur[(r.schedule, int(r.budget))].test_mae)
        reason = check.fails(now)
        change = "–" if math.isnan(now) else f"{100 * (now / check.baseline - 1):+.2f} %"
        rows.append([terminal(r.schedule, 60), str(r.budget), f"{check.baseline:.4f}",
                     "–" if math.isnan(now) else f"{now:.4f}", change,
                     f"{100 * (check.limit / check.baseline - 1):+.2f} %",
                     "REGRESSION" if reason else "ok"])
        if reason:
            failures.append(reason)
    listed = {(r.schedule, int(r.budget)) for r in baseline.itertuples()}
    for (schedule, budget), r in cur.items():
        if (schedule, budget) not in listed:
            now = float(r.test_mae)
            rows.append([terminal(schedule, 60), str(budget), "–",
                         "–" if math.isnan(now) else f"{now:.4f}", "–", "–", NOT_IN_BASELINE])
    return rows, failures


def cmd_check(args) -> int:
    if not (0 <= args.tolerance < 1):
        raise ConfigError(f"--tolerance must be in [0, 1), got {args.tolerance}")
    exp_dir = Path(args.results) / args.experiment
    notes: list[str] = []
    try:
        res = load_results(exp_dir, notes)
    finally:
        for note in notes:
            print(f"note: {terminal(note, 1000)}", file=sys.stderr)
    current = current_means(res.summary)
    if args.write_baseline:
        if current["test_mae"].isna().any():
            bad = current[current["test_mae"].isna()]
            raise ConfigError(f"{exp_dir}: unfinished cells, not writing a baseline: "
                              + ", ".join(f"{r.schedule}@{r.budget}" for r in bad.itertuples()))
        atomic_write_text(Path(args.write_baseline), rows_to_csv(
            current[BASELINE_COLUMNS + [SPREAD_COLUMN]].to_dict("records"),
            BASELINE_COLUMNS + [SPREAD_COLUMN]))
        print(f"wrote baseline {args.write_baseline} ({len(current)} cells)", file=sys.stderr)
        if not args.baseline:
            return 0
    if not args.baseline:
        raise ConfigError("give --baseline FILE to compare with, or --write-baseline FILE")
    path = Path(args.baseline)
    rows, failures = compare(read_baseline(path), current, args.tolerance, path)
    print(md_table(["schedule", "budget", "baseline", "current", "change", "allowed", ""], rows,
                   "lrrrrrl"))
    for reason in failures:
        print(f"regression: {terminal(reason, 1000)}", file=sys.stderr)
    extra = [f"{r[0]}@{r[1]}" for r in rows if r[-1] == NOT_IN_BASELINE]
    if extra:
        print(f"note: {len(extra)} result cell(s) not in baseline, not checked: "
              f"{', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}", file=sys.stderr)
    checked = len(rows) - len(extra)
    compared = sum(1 for r in rows if r[-1] != NOT_IN_BASELINE and r[3] != "–")
    verdict = (f"{len(failures)} of {checked} cells regressed beyond "
               f"{100 * args.tolerance:.1f} % plus seed noise" if failures
               else f"all {checked} cells within {100 * args.tolerance:.1f} % plus seed noise "
                    "of the baseline")
    print(verdict, file=sys.stderr)
    if compared == 0:
        print("error: compared nothing: no cell of the baseline has a finished result here; "
              "the gate does not pass", file=sys.stderr)
        return 1
    return 1 if failures else 0

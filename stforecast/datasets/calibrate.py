"""Compare ``synthetic-la`` with the real los-loop week, statistic by statistic.

Run as ``python -m stforecast.datasets.calibrate [--data-dir DIR] [--nodes 207] [--days 7]
[--seed 0]``. It prints markdown tables: distribution, autocorrelation, spatial correlation,
missing share, and historical-average / persistence MAE (masked, per horizon, on the test
windows of a 70/10/20 split, computed by ``stforecast.baselines`` exactly as the benchmark
reports them), then the mean speed per hour of day on weekdays and weekends.

The synthetic week starts on the weekday los-loop starts on (Thursday 2012-03-01), so that
the split puts the same days in train, validation and test; a second synthetic column shows
the generator's default size and start, which benchmark runs use. Exit status 2, with one
line, when the los-loop files are absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from stforecast.baselines import evaluate_baseline
from stforecast.datasets import DataError, Dataset, load_dataset
from stforecast.datasets.base import observed
from stforecast.datasets.synthetic import DEFAULT_DAYS, DEFAULT_START, generate
from stforecast.windows import WindowedData

LOS_LOOP_START = "2012-03-01 00:00"  # los-loop's first step, a Thursday


def _lag_corr(x: np.ndarray, seen: np.ndarray, lag: int) -> float:
    """Mean over sensors of the correlation between readings ``lag`` steps apart.

    Only pairs where both readings exist count, so missing values do not pull it down.
    """
    a, b = x[lag:], x[:-lag]
    ok = seen[lag:] & seen[:-lag]
    out = []
    for i in range(x.shape[1]):
        m = ok[:, i]
        if m.sum() > 10 and a[m, i].std() > 0 and b[m, i].std() > 0:
            out.append(np.corrcoef(a[m, i], b[m, i])[0, 1])
    return float(np.mean(out))


def _pair_corr(x: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """``[N, N]`` Pearson correlation of sensor pairs over the steps both observed."""
    m = seen.astype(np.float64)
    xm = np.where(seen, x, 0.0)
    n = m.T @ m
    sx = xm.T @ m  # [i, j]: sum of x_i over the steps where x_j is observed too
    sxx = (xm * xm).T @ m
    sxy = xm.T @ xm
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = sxy / n - (sx / n) * (sx.T / n)
        var_i = sxx / n - (sx / n) ** 2
        return cov / np.sqrt(var_i * var_i.T)


def statistics(ds: Dataset) -> dict[str, float | str]:
    """The calibration statistics of one dataset, keyed by row label."""
    x = ds.values[..., 0].astype(np.float64)
    seen = observed(x, ds.null_value)
    v = x[seen]
    p5, p50, p95 = np.percentile(v, [5, 50, 95])
    stats = {
        "steps x sensors": f"{ds.num_steps} x {ds.num_nodes}",
        "mean speed (mph)": v.mean(),
        "std (mph)": v.std(),
        "5th percentile": p5,
        "median": p50,
        "95th percentile": p95,
        "share below 40 mph": np.mean(v < 40),
        "autocorrelation at 5 min (mean over sensors)": _lag_corr(x, seen, 1),
        "autocorrelation at 1 h (mean over sensors)": _lag_corr(x, seen, 12),
    }
    corr = _pair_corr(x, seen)
    a = np.maximum(ds.adjacency, ds.adjacency.T) > 0
    off = ~np.eye(ds.num_nodes, dtype=bool)
    stats["correlation, graph neighbours"] = float(np.nanmean(corr[a & off]))
    stats["correlation, all pairs"] = float(np.nanmean(corr[off]))
    stats["graph: nonzeros per row (symmetrised)"] = float(a.sum(1).mean())
    stats["missing share"] = ds.missing_share
    data = WindowedData(ds)
    for name, label in (("historical_average", "HA"), ("persistence", "persistence")):
        res = evaluate_baseline(name, data)
        for h in (3, 6, 12):
            stats[f"{label} MAE h{h}"] = res[f"mae_h{h}"]
        stats[f"{label} MAE overall"] = res["mae"]
    return stats


def hourly_profile(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Mean observed speed per hour of day, ``([24] weekdays, [24] weekends)``."""
    x = ds.values[..., 0].astype(np.float64)
    seen = observed(x, ds.null_value)
    day = ds.timestamps.astype("datetime64[D]")
    hour = ((ds.timestamps - day).astype("timedelta64[h]").astype(np.int64))
    weekend = (day.astype(np.int64) + 3) % 7 >= 5
    out = []
    for kind in (False, True):
        prof = np.full(24, np.nan)
        for h in range(24):
            rows = (hour == h) & (weekend == kind)
            if rows.any():
                prof[h] = x[rows][seen[rows]].mean()
        out.append(prof)
    return out[0], out[1]


def _fmt(v: object) -> str:
    if isinstance(v, str):
        return v
    v = float(v)
    if np.isnan(v):
        return "-"
    if abs(v) < 1:
        return f"{v:.3f}"
    return f"{v:.2f}"


def render(columns: dict[str, Dataset]) -> str:
    """Both markdown tables for datasets given by column title."""
    stats = {title: statistics(ds) for title, ds in columns.items()}
    titles = list(columns)
    rows = list(next(iter(stats.values())))
    lines = ["| statistic | " + " | ".join(titles) + " |",
             "|---|" + "---:|" * len(titles)]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(_fmt(stats[t][r]) for t in titles) + " |")
    lines += ["", "Mean speed (mph) per hour of day:", ""]
    profiles = {t: hourly_profile(ds) for t, ds in columns.items()}
    head = [f"{t}, {kind}" for kind in ("weekday", "weekend") for t in titles]
    lines += ["| hour | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for h in range(24):
        cells = [_fmt(profiles[t][k][h]) for k in (0, 1) for t in titles]
        lines.append(f"| {h:02d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the side-by-side tables; 2 when the real data is absent."""
    parser = argparse.ArgumentParser(
        prog="python -m stforecast.datasets.calibrate",
        description="Compare synthetic-la with the real los-loop week (markdown tables).",
        epilog="example: python -m stforecast.datasets.calibrate --data-dir ../shared/data",
    )
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding los-loop/ (default: $STBENCH_DATA or ./data)")
    parser.add_argument("--nodes", type=int, default=207,
                        help="synthetic sensors (default 207, as los-loop)")
    parser.add_argument("--days", type=int, default=7,
                        help="synthetic days for the matched column (default 7, as los-loop)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--no-default-size", action="store_true",
                        help="skip the column at the generator's default size")
    args = parser.parse_args(argv)
    try:
        real = load_dataset("los-loop", data_dir=args.data_dir)
    except DataError as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 2
    columns = {"los-loop": real}
    timings = []
    sizes = [(args.days, LOS_LOOP_START, "")]
    if not args.no_default_size:
        sizes.append((DEFAULT_DAYS, DEFAULT_START, ", default"))
    for days, start, note in sizes:
        t = time.perf_counter()
        try:
            syn = generate(nodes=args.nodes, days=days, seed=args.seed, start=start)
        except DataError as exc:
            print(f"calibrate: {exc}", file=sys.stderr)
            return 2
        columns[f"synthetic-la ({args.nodes} x {days} d{note})"] = syn
        timings.append(f"{args.nodes} x {days} d in {time.perf_counter() - t:.2f} s")
    print(render(columns))
    print(f"\nsynthetic-la seed {args.seed}, starting {LOS_LOOP_START} like los-loop; "
          f"generated {', '.join(timings)}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

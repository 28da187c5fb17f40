"""Loaders for real data formats; each returns a validated ``Dataset``.

Formats:
- ``los-loop``: T-GCN's ``los_speed.csv`` (header of sensor ids, one row per 5-minute step,
  no timestamps; 2012-03-01 00:00 onwards) and ``los_adj.csv`` (``[N, N]`` weights, no header).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stforecast.datasets.base import DataError, Dataset, time_index
from stforecast.datasets.registry import DatasetEntry, register_dataset


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from exc


def _numeric(df: pd.DataFrame, path: Path) -> np.ndarray:
    """Every cell as float32; a non-numeric cell is an error naming its row and column."""
    values = df.apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & df.notna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise DataError(f"{path}: non-numeric value {df.iat[row, col]!r} at row {row + 1}, "
                        f"column {df.columns[col]!r}")
    return values.to_numpy(np.float32)


def load_los_loop(folder: Path) -> Dataset:
    """One week of METR-LA (207 sensors, 2012-03-01..07), gaps filled by interpolation."""
    speed_path, adj_path = folder / "los_speed.csv", folder / "los_adj.csv"
    df = _read_csv(speed_path)
    speeds = _numeric(df, speed_path)
    adj = _numeric(_read_csv(adj_path, header=None), adj_path)
    return Dataset(
        name="los-loop",
        values=np.nan_to_num(speeds, nan=0.0)[..., None],
        adjacency=adj,
        timestamps=time_index("2012-03-01 00:00", len(speeds), 5),
        interval_minutes=5,
        null_value=0.0,
        sensor_ids=tuple(str(c) for c in df.columns),
        units="mph",
        meta={"source": str(folder), "files": ["los_speed.csv", "los_adj.csv"]},
    )


register_dataset(DatasetEntry(
    name="los-loop",
    summary="one real week of METR-LA (2012-03-01..07), 207 sensors, 5-min speeds in mph",
    load=load_los_loop,
    files=("los_speed.csv", "los_adj.csv"),
    published="https://github.com/lehaifeng/T-GCN (data/los_speed.csv, data/los_adj.csv)",
))

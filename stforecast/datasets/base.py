"""The in-memory form every dataset loader returns.

Layout, stated once for the whole package: a series is ``[T, N, F]`` (time steps, sensors,
features) in its original units, float32. Feature 0 is the forecasting target (speed in mph
for METR-LA-style data, flow for PEMS04/08). A missing reading holds ``null_value`` (0.0, as
METR-LA stores it); loaders turn NaN into ``null_value`` so that one mask rule covers every
source. With ``null_value`` NaN (a manifest's ``null_value: none``) no number is a marker:
only NaN cells are missing and zeros are values. The adjacency is ``[N, N]`` with row ``i``
describing sensor ``i``, in the same node order as the series.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np


class DataError(ValueError):
    """A dataset is missing, unreadable or malformed; the message names the file and the fix."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A multivariate sensor series with its graph and time axis.

    ``timestamps`` are numpy ``datetime64[ns]``, one per step, evenly spaced by
    ``interval_minutes``; time-of-day and day-of-week features are derived from them.
    ``meta`` carries provenance (source files, generator seed and size) for the run record;
    ``meta["null_value_stated"]`` is False when a user's files left the marker at its default.
    """

    name: str
    values: np.ndarray
    adjacency: np.ndarray
    timestamps: np.ndarray
    interval_minutes: int = 5
    null_value: float = 0.0
    sensor_ids: tuple[str, ...] = ()
    units: str = "mph"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def num_steps(self) -> int:
        return self.values.shape[0]

    @property
    def num_nodes(self) -> int:
        return self.values.shape[1]

    @property
    def num_features(self) -> int:
        return self.values.shape[2]

    @property
    def mask(self) -> np.ndarray:
        """``[T, N]`` bool: True where the target (feature 0) was observed."""
        return observed(self.values[..., 0], self.null_value)

    @property
    def missing_share(self) -> float:
        return float(1.0 - self.mask.mean())

    @property
    def null_text(self) -> str:
        """The missing-value marker as a manifest writes it: a number, or ``none``."""
        return "none" if np.isnan(self.null_value) else f"{self.null_value:g}"

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of everything about the data that can change a number: the series, its
        mask, the adjacency, the timestamps, the missing-value marker, the interval, the
        name and the units. Two loads of the same files with the same options agree; an
        edited cell or manifest option does not."""
        h = hashlib.sha256()
        for arr in (self.values, self.mask, self.adjacency,
                    np.asarray(self.timestamps, dtype="datetime64[ns]").view(np.int64)):
            arr = np.ascontiguousarray(arr)
            if arr.dtype.kind == "f":
                arr = np.where(np.isnan(arr), np.nan, arr).astype(arr.dtype)  # one NaN pattern
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.tobytes())
        h.update(json.dumps({"null_value": self.null_text, "interval": self.interval_minutes,
                             "name": self.name, "units": self.units}, sort_keys=True).encode())
        return h.hexdigest()

    def describe(self) -> str:
        """One line for logs and ``bench list``."""
        days = self.num_steps * self.interval_minutes / 1440
        return (
            f"{self.name}: {self.num_steps} steps x {self.num_nodes} sensors x "
            f"{self.num_features} features, {self.interval_minutes}-min steps ({days:.1f} days), "
            f"{self.units}, {100 * self.missing_share:.1f}% missing"
        )


def observed(target: np.ndarray, null_value: float) -> np.ndarray:
    """True where a reading exists: finite and different from the null marker."""
    ok = np.isfinite(target)
    if not np.isnan(null_value):
        ok &= target != null_value
    return ok


MAX_ABS_VALUE = 1e15  # a squared error of this size still fits float32 (max 3.4e38)


def validate(ds: Dataset) -> None:
    """Reject shapes and values that would silently break training later."""
    where = ds.meta.get("source", ds.name)
    v, a, t = ds.values, ds.adjacency, ds.timestamps
    if not isinstance(v, np.ndarray) or v.ndim != 3:
        raise DataError(f"{where}: series must be [T, N, F], got shape {getattr(v, 'shape', None)}")
    if v.dtype != np.float32:
        raise DataError(f"{where}: series must be float32, got {v.dtype}")
    if v.shape[0] < 24 or v.shape[1] < 1 or v.shape[2] < 1:
        raise DataError(f"{where}: series of shape {v.shape} is too small (need >= 24 steps)")
    if np.isnan(v).any() and not np.isnan(ds.null_value):
        raise DataError(f"{where}: series holds NaN; loaders must map missing values to "
                        f"null_value={ds.null_value}")
    if np.isinf(v).any():
        raise DataError(f"{where}: series holds infinite values")
    too_big = np.abs(np.nan_to_num(v)) > MAX_ABS_VALUE
    if too_big.any():
        row, col, feat = np.argwhere(too_big)[0]
        sensor = ds.sensor_ids[col] if ds.sensor_ids else str(col + 1)
        raise DataError(f"{where}: value {v[row, col, feat]:g} at step {row + 1} (row), sensor "
                        f"{sensor} (column), feature {feat + 1} is beyond ±{MAX_ABS_VALUE:g}; "
                        "squared errors would overflow float32: fix or blank the cell")
    if not isinstance(a, np.ndarray) or a.shape != (v.shape[1], v.shape[1]):
        raise DataError(f"{where}: adjacency shape {getattr(a, 'shape', None)} does not match "
                        f"{v.shape[1]} sensors in the series")
    if not np.isfinite(a).all() or (a < 0).any():
        raise DataError(f"{where}: adjacency must be finite and non-negative")
    if t.shape != (v.shape[0],):
        raise DataError(f"{where}: {t.shape[0]} timestamps for {v.shape[0]} steps")
    if ds.interval_minutes <= 0 or 1440 % ds.interval_minutes:
        raise DataError(f"{where}: interval_minutes={ds.interval_minutes} must divide a day")
    if ds.sensor_ids and len(ds.sensor_ids) != v.shape[1]:
        raise DataError(f"{where}: {len(ds.sensor_ids)} sensor ids for {v.shape[1]} sensors")
    if not observed(v[..., 0], ds.null_value).any():
        raise DataError(f"{where}: no observed values in the target feature")


def time_index(start: str, steps: int, interval_minutes: int) -> np.ndarray:
    """Evenly spaced ``datetime64[ns]`` stamps, for sources that store none."""
    first = np.datetime64(start, "ns")
    return first + np.arange(steps) * np.timedelta64(interval_minutes, "m")

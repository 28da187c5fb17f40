"""Loaders for real traffic data formats; each returns a validated ``Dataset`` (``[T, N, F]``).

Nothing is downloaded. A named dataset reads ``<data_dir>/<name>/``; a missing file is reported
with the folder and where the file is published.

Named datasets
--------------
``los-loop``
    T-GCN's ``los_speed.csv`` (a header of sensor ids, one row per 5-minute step from
    2012-03-01 00:00, speeds in mph) and ``los_adj.csv`` (``[N, N]`` weights, no header).
``sz-taxi``
    T-GCN's SZ-taxi: ``sz_speed.npz`` (array ``data``, ``[2976, 156, 1]``, 15-minute taxi
    speeds in km/h from 2015-01-01 00:00, 0 = not observed) and ``sz_adj.csv`` (``[N, N]``
    directed 0/1 links, no header).
``metr-la``, ``pems-bay``
    DCRNN's ``metr-la.h5`` / ``pems-bay.h5``: pandas HDF, key ``df``, a DataFrame with a
    DatetimeIndex of 5-minute steps and one column per sensor id, speeds in mph, 0.0 = missing.
    Reading ``.h5`` needs PyTables: ``pip install 'stbench[hdf5]'``. The graph is DCRNN's
    ``adj_mx.pkl`` / ``adj_mx_bay.pkl`` (``[sensor_ids, sensor_id_to_ind, adj_mx]``), used as
    published (directed); the series columns are put in the pickle's sensor order.
``pems04``, ``pems08``
    ASTGCN / STSGCN's ``PEMS04.npz`` / ``PEMS08.npz`` (key ``data``, ``[T, N, 3]``: flow,
    occupancy, speed; 5-minute steps from 2018-01-01 00:00 and 2016-07-01 00:00) with the
    distance list ``PEMS04.csv`` / ``PEMS08.csv`` (``from,to,cost``, 0-based node indices).
    The target is flow (vehicles per 5 minutes), 0.0 = missing. The graph is DCRNN's Gaussian
    kernel of the cost, ``exp(-(d / sigma)^2)`` with sigma the standard deviation of the known
    distances and weights below 0.1 cut, diagonal 1: the same rule as the METR-LA and
    PEMS-BAY graphs. Each listed link counts in both directions, because these lists name
    most road links only once. The 0.1 cut drops the longest links (72 of PEMS04's 340,
    91 of PEMS08's 274); ``edge_weights="binary"`` keeps every link with weight 1, as
    ASTGCN and STSGCN do. ``symmetric=False`` keeps only the listed direction.

Your own files: ``--dataset PATH``
----------------------------------
Series formats (chosen by suffix):

- ``.csv``: a header row of sensor ids, then one row per step. A first column of timestamps
  (anything pandas parses, e.g. ``2012-03-01 00:05``) is detected and used.
- ``.npz``: the array under key ``data`` (or the only key), ``[T, N]`` or ``[T, N, F]`` with
  feature 0 the target; optional keys ``timestamps`` (datetime64 or ISO strings) and
  ``sensor_ids``.
- ``.h5`` / ``.hdf5``: DCRNN's form above (key ``df``, or the only key).

Adjacency formats (chosen by suffix and shape):

- ``.csv`` square matrix, with or without a header row (and a first column of labels, as
  pandas writes it). Labels naming the series' sensor ids reorder rows and columns to
  match (naming only some of them is an error); otherwise rows follow the series' columns.
- ``.csv`` edge list ``from,to,cost`` (header optional; a 3-column CSV that cannot be a
  square matrix):
  nodes are sensor ids of the series or 0-based indices; weights as for ``pems04`` above
  (Gaussian kernel, links in both directions unless ``symmetric=False``, or
  ``edge_weights="binary"``). DCRNN's directed distance files need ``symmetric=False`` to
  reproduce ``adj_mx.pkl``.
- ``.npy``: an ``[N, N]`` array.
- ``.pkl``: DCRNN's pickle; its sensor order wins and the series columns are matched to it
  by id. Only lists, dicts, strings and numpy arrays are unpickled, never code.

PATH may be:

- a folder holding ``dataset.yaml``, the simplest and most explicit way::

      series: speeds.csv          # required, relative to the folder
      adjacency: graph.npy        # optional; otherwise found by the names below
      start: "2021-05-03 00:00"   # first step, when the series has no timestamps
      interval_minutes: 5         # step length, when the series has no timestamps
      null_value: 0.0             # marker of a missing reading (NaN cells become it), or
                                  # none: only empty/NaN cells are missing, zeros are values
      units: km/h
      name: my-city
      symmetric: true             # edge lists only
      edge_weights: gaussian      # edge lists only: gaussian | binary

- a folder without a manifest: the series is the one file matching, in order of preference,
  ``*.h5`` / ``*.hdf5``, then ``*.npz``, then ``data.csv`` / ``*speed*.csv`` /
  ``*flow*.csv``; the adjacency is the one file matching ``*adj*.pkl`` / ``*adj*.npy`` /
  ``*adj*.csv``, then ``*distance*.csv``, then a CSV with the series' name (ASTGCN's
  ``PEMS04.npz`` + ``PEMS04.csv``). Two matches at the same level are an error: name the
  files in ``dataset.yaml``.
- a series file: its adjacency is given by the ``adjacency=`` option or found beside it by
  the rules above.

The same keys (all but ``series``) are keyword options of ``load_path`` and override the
manifest. Without timestamps the series starts at ``start`` (default 2000-01-03 00:00, a
Monday) with ``interval_minutes`` steps (default 5). With timestamps the step is the
smallest spacing; missing steps (a daylight-saving hour, an outage) are inserted as missing
readings so that the time features stay true. A missing adjacency is an error, never
silently an identity matrix. Every failure is a ``DataError`` naming the file.

A data file is untrusted input too: it must be a regular file (a folder, FIFO or device is
refused before it is opened) no larger than ``DATA_LIMITS`` for its format, and its size is
checked against the shape it declares before a parser allocates anything: an ``.npy`` array
(alone or in an ``.npz``) against its header's shape and dtype; a CSV against its header's
columns (no line longer than ``MAX_CELL_BYTES`` per column allows, and the cells it holds
must fit in the memory available to parse them). ``dataset.yaml`` is read as the suite reads
every YAML file: a key given twice is an error.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import pickle
import stat
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from stforecast.datasets.base import DataError, Dataset
from stforecast.datasets.registry import DatasetEntry, register_dataset
from stforecast.graph import edges_to_distances, gaussian_kernel

HDF5_HINT = "pip install 'stbench[hdf5]'"
EDGE_WEIGHTS = ("gaussian", "binary")

SERIES_PATTERNS: tuple[tuple[str, ...], ...] = (
    ("*.h5", "*.hdf5"),
    ("*.npz",),
    ("data.csv", "*speed*.csv", "*flow*.csv"),
)
ADJACENCY_PATTERNS: tuple[tuple[str, ...], ...] = (
    ("*adj*.pkl", "*adj*.npy", "*adj*.csv"),
    ("*distance*.csv",),
)
MANIFEST = "dataset.yaml"


GiB = 1 << 30
# The most bytes a data file of each format may hold: far above the largest public traffic
# datasets (PEMS-BAY's speeds are about 130 MB as CSV), far below what fills a disk by mistake.
DATA_LIMITS = {".csv": 8 * GiB, ".npz": 16 * GiB, ".npy": 16 * GiB, ".h5": 32 * GiB,
               ".hdf5": 32 * GiB, ".pkl": 2 * GiB, ".yaml": 1 << 20}
MAX_CELL_BYTES = 64   # a CSV cell: a timestamp or a number, with room to spare
PARSE_BYTES_PER_CELL = 32  # what pandas needs per CSV cell while parsing, about


# --------------------------------------------------------------------------- small helpers

def _brief(exc: BaseException) -> str:
    """One line from an exception message: HDF5 and pandas errors span many lines."""
    if "allow_pickle" in str(exc):  # numpy's hint suggests loading untrusted pickles
        return "not a NumPy file, or one holding Python objects rather than numbers"
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem and mark is not None:  # YAML: the message ends in a caret drawing
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    lines = [line.strip() for line in str(exc).splitlines() if any(c.isalnum() for c in line)]
    text = lines[-1] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _require_file(path: Path) -> None:
    """A regular file within the size limit of its format; else ``DataError``."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO, device or socket"
        raise DataError(f"{path}: {what}, not a regular file")
    limit = DATA_LIMITS.get(Path(path).suffix.lower())
    if limit is not None and st.st_size > limit:
        raise DataError(f"{path}: {st.st_size:,} bytes, over the {limit:,}-byte limit for a "
                        f"{Path(path).suffix.lower()} data file")


def _available_memory() -> int | None:
    """Bytes of memory available to this process (Linux), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_csv_shape(path: Path) -> None:
    """A CSV's size against the shape its header declares, before pandas sees it: the
    header must end within 1 MiB, no line may be longer than its columns allow, and the
    cells must fit in the memory available for parsing them."""
    with open(path, "rb") as fh:
        head = fh.readline(1 << 20)
        if not head.endswith(b"\n") and fh.read(1):
            raise DataError(f"{path}: the first line is longer than 1 MiB; not a CSV table")
        columns = head.count(b",") + 1
        width = columns * MAX_CELL_BYTES + 1024
        rows, line, tail = 1, 2, 0
        while chunk := fh.read(16 << 20):
            pieces = chunk.split(b"\n")
            lengths = [len(p) for p in pieces]
            lengths[0] += tail
            longest = max(lengths[:-1], default=0)
            if max(longest, lengths[-1]) > width:
                at = next((i for i, n in enumerate(lengths) if n > width), len(lengths) - 1)
                raise DataError(f"{path}: line {line + at} is longer than {width:,} bytes, "
                                f"more than {columns} columns of numbers take; not a CSV table "
                                "of the header's shape")
            rows += len(pieces) - 1
            line += len(pieces) - 1
            tail = lengths[-1]
    cells = rows * columns
    need, have = cells * PARSE_BYTES_PER_CELL, _available_memory()
    if have is not None and need > have:
        raise DataError(f"{path}: {rows:,} lines of {columns} columns; parsing them needs "
                        f"about {need / GiB:.1f} GiB of memory, {have / GiB:.1f} GiB is "
                        "available")


def _check_npy_header(fh, path: Path, size: int, where: str = "", what: str = ".npy") -> None:
    """The array an ``.npy`` stream declares must fit in the ``size`` bytes it comes in."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fh)
        else:
            shape, _, dtype = fmt.read_array_header_2_0(fh)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}{where}: cannot read as {what} ({_brief(exc)})") from exc
    declared = math.prod(shape) * dtype.itemsize
    if declared > size:
        raise DataError(f"{path}{where}: declares an array of shape {tuple(shape)} "
                        f"({declared:,} bytes) in {size:,} bytes; truncated or forged")


def _check_npz(path: Path) -> None:
    """Every array of an ``.npz`` (or a bare ``.npy`` under that name) against the size its
    header declares; an archive member is also held to the ``.npy`` limit once unpacked."""
    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as fh:
                _check_npy_header(fh, path, os.fstat(fh.fileno()).st_size, what="NPZ")
            return
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                where = f" ({info.filename})"
                if info.file_size > DATA_LIMITS[".npy"]:
                    raise DataError(f"{path}{where}: unpacks to {info.file_size:,} bytes, over "
                                    f"the {DATA_LIMITS['.npy']:,}-byte limit")
                with zf.open(info) as fh:
                    _check_npy_header(fh, path, info.file_size, where, "NPZ")
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read as NPZ ({_brief(exc)})") from exc


def _id_str(label: object) -> str:
    """A sensor id as text; ``773869.0`` (ids stored as floats) reads as ``773869``."""
    if isinstance(label, (float, np.floating)) and float(label).is_integer():
        return str(int(label))
    return str(label).strip()


def _list(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(map(str, items[:limit]))
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _where(df: pd.DataFrame, row: int, col: int, first_line: int | None) -> str:
    """``line L, column 'id'`` for a CSV cell, ``row <label>, column <label>`` for a frame.

    A CSV read without a header has integer column labels: its 0-based positions in the file.
    """
    label = df.columns[col]
    if first_line is None:
        return f"row {df.index[row]}, column {label!r}"
    column = f"column {label!r}" if isinstance(label, str) else f"column {int(label) + 1}"
    return f"line {first_line + row}, {column}"


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    _require_file(path)
    _check_csv_shape(path)
    try:
        return pd.read_csv(path, **kwargs)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({_brief(exc)})") from exc


def _numeric(df: pd.DataFrame, path: Path, first_line: int | None = None) -> np.ndarray:
    """Every cell as float32, empty cells as NaN; a non-numeric cell is an error naming it."""
    values = df.apply(pd.to_numeric, errors="coerce")
    bad = (values.isna() & df.notna()).to_numpy()
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{path}: non-numeric value {df.iat[row, col]!r} at "
                        f"{_where(df, row, col, first_line)}")
    return values.to_numpy(np.float32)


def _check_weights(adj: np.ndarray, path: Path) -> np.ndarray:
    """Adjacency weights must be numbers: NaN is an error here, unlike in a series."""
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise DataError(f"{path}: adjacency must be a square [N, N] matrix, got shape {adj.shape}")
    bad = ~np.isfinite(adj)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{path}: adjacency holds {adj[row, col]} (or an empty cell) at row "
                        f"{row + 1}, column {col + 1}; every weight must be a number")
    if (adj < 0).any():
        row, col = np.argwhere(adj < 0)[0]
        raise DataError(f"{path}: adjacency holds a negative weight {adj[row, col]} at row "
                        f"{row + 1}, column {col + 1}")
    return adj.astype(np.float32)


def _parse_stamps(raw: Sequence, path: Path, what: str = "timestamp") -> np.ndarray:
    """Any pandas-parseable times as naive ``datetime64[ns]``; an unparseable one is an error."""
    raw = pd.Series(np.asarray(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pandas' "could not infer format" notice
        try:
            parsed = pd.to_datetime(raw, errors="coerce")
        except (ValueError, TypeError, OverflowError) as exc:
            raise DataError(f"{path}: cannot parse the {what}s ({_brief(exc)})") from exc
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: {what} {raw.iloc[i]!r} at row {i + 1} is not a date/time")
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_localize(None)  # keep local wall-clock time for time-of-day
    return parsed.to_numpy().astype("datetime64[ns]")


# --------------------------------------------------------------------------- series readers

@dataclass(frozen=True)
class _Series:
    """A series as stored: ``[T, N, F]`` float32 with NaN for missing, before alignment."""

    path: Path
    values: np.ndarray
    timestamps: np.ndarray | None = None      # datetime64[ns] per row, when the file has them
    sensor_ids: tuple[str, ...] | None = None


def _looks_like_time(column: pd.Series) -> bool:
    """A first CSV column holds timestamps when it is text whose first value parses as a date."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return True
    if pd.api.types.is_numeric_dtype(column):
        return False
    first = column.dropna()
    if first.empty:
        return False
    value = str(first.iloc[0])
    try:
        float(value)
        return False
    except ValueError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            pd.to_datetime(value)
        except (ValueError, TypeError, OverflowError):
            return False
    return True


def _is_row_index(df: pd.DataFrame) -> bool:
    """pandas ``to_csv`` writes the row numbers as an unnamed first column; they are no sensor."""
    col = df.iloc[:, 0]
    return (str(df.columns[0]).startswith("Unnamed: 0")
            and pd.api.types.is_integer_dtype(col)
            and np.array_equal(col.to_numpy(), np.arange(len(df))))


def _read_series_csv(path: Path) -> _Series:
    """A CSV with a header of sensor ids and an optional first column of timestamps."""
    df = _read_csv(path)
    if df.empty or df.shape[1] == 0:
        raise DataError(f"{path}: no data rows below the header")
    stamps = None
    if _looks_like_time(df.iloc[:, 0]):
        stamps = _parse_stamps(df.iloc[:, 0], path)
        df = df.iloc[:, 1:]
    elif _is_row_index(df):
        df = df.iloc[:, 1:]
    if df.shape[1] == 0:
        raise DataError(f"{path}: no sensor columns besides the timestamps")
    values = _numeric(df, path, first_line=2)
    return _Series(path, values[..., None], stamps, tuple(_id_str(c) for c in df.columns))


def _read_series_npz(path: Path) -> _Series:
    """An NPZ with ``data`` (or a single array) ``[T, N]`` / ``[T, N, F]``."""
    _require_file(path)
    _check_npz(path)
    try:
        with open(path, "rb") as fh:
            loaded = np.load(fh, allow_pickle=False)
            if isinstance(loaded, np.ndarray):  # a bare .npy saved under an .npz name
                arrays = {"data": loaded}
            else:
                with loaded:
                    keys = list(loaded.files)
                    data_keys = [k for k in keys if k not in ("timestamps", "sensor_ids")]
                    key = "data" if "data" in keys else (
                        data_keys[0] if len(data_keys) == 1 else None)
                    if key is None:
                        raise DataError(f"{path}: holds arrays {_list(keys)}; expected one named "
                                        f"'data' or a single array")
                    arrays = {k: loaded[k] for k in {key, "timestamps", "sensor_ids"} & set(keys)}
                    arrays["data"] = arrays.pop(key)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read as NPZ ({_brief(exc)})") from exc
    data = arrays["data"]
    if data.ndim not in (2, 3):
        raise DataError(f"{path}: series must be [T, N] or [T, N, F], got shape {data.shape}")
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise DataError(f"{path}: series holds {data.dtype} values, not numbers")
    values = data.astype(np.float32)
    if values.ndim == 2:
        values = values[..., None]
    stamps = None
    if "timestamps" in arrays:
        if arrays["timestamps"].shape != (len(values),):
            raise DataError(f"{path}: 'timestamps' has shape {arrays['timestamps'].shape}, "
                            f"expected ({len(values)},), one per step")
        stamps = _parse_stamps(arrays["timestamps"], path)
    ids = None
    if "sensor_ids" in arrays:
        ids = tuple(_id_str(s) for s in np.asarray(arrays["sensor_ids"]).ravel())
        if len(ids) != values.shape[1]:
            raise DataError(f"{path}: {len(ids)} sensor_ids for {values.shape[1]} sensors")
    return _Series(path, values, stamps, ids)


def _require_pytables(path: Path) -> None:
    try:
        import tables  # noqa: F401  (pandas reads HDF through it)
    except ImportError as exc:
        raise DataError(f"{path}: reading .h5 files needs PyTables, which is not installed; "
                        f"run {HDF5_HINT}") from exc


def _read_series_h5(path: Path) -> _Series:
    """DCRNN's pandas HDF: key ``df`` (or the only key), one column per sensor id."""
    _require_file(path)
    _require_pytables(path)
    try:
        with pd.HDFStore(path, mode="r") as store:
            keys = list(store.keys())
            key = "/df" if "/df" in keys else (keys[0] if len(keys) == 1 else None)
            frame = store[key] if key is not None else None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError) as exc:
        raise DataError(f"{path}: cannot read as pandas HDF ({_brief(exc)})") from exc
    if frame is None:
        raise DataError(f"{path}: holds keys {_list(keys) or 'none'}; expected 'df' "
                        f"(DCRNN's metr-la.h5 form) or a single key")
    if not isinstance(frame, pd.DataFrame) or frame.shape[1] == 0:
        raise DataError(f"{path}: key {key!r} holds a {type(frame).__name__}, expected a "
                        f"DataFrame with one column per sensor")
    ids = tuple(_id_str(c) for c in frame.columns)
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"{path}: duplicate sensor columns {_list(dup)}")
    stamps = None
    if isinstance(frame.index, pd.DatetimeIndex):
        index = frame.index.tz_localize(None) if frame.index.tz is not None else frame.index
        stamps = index.to_numpy().astype("datetime64[ns]")
    values = _numeric(frame, path)
    return _Series(path, values[..., None], stamps, ids)


def _read_series(path: Path) -> _Series:
    """Dispatch on the suffix: ``.csv``, ``.npz``, ``.h5`` / ``.hdf5``."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_series_csv(path)
    if suffix == ".npz":
        return _read_series_npz(path)
    if suffix in (".h5", ".hdf5"):
        return _read_series_h5(path)
    raise DataError(f"{path}: unknown series format '{path.suffix}' (expected .csv, .npz or .h5)")


# --------------------------------------------------------------------------- adjacency readers

_PICKLE_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
})


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds lists, dicts, strings and numpy arrays only, so that reading a graph runs no
    code the file names (a pickle can otherwise call any importable function)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays, "
                                     f"lists, dicts and strings are allowed")


def read_dcrnn_pickle(path: Path) -> tuple[tuple[str, ...], np.ndarray]:
    """DCRNN's ``adj_mx.pkl``: ``[sensor_ids, sensor_id_to_ind, adj_mx]`` -> (ids, ``[N, N]``).

    The files were written by Python 2, so strings are decoded as latin-1.
    """
    _require_file(path)
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(fh, encoding="latin1").load()
    except Exception as exc:  # malformed pickles fail in many ways; all mean the same here
        raise DataError(f"{path}: cannot read as a pickle ({_brief(exc)})") from exc
    expected = "expected DCRNN's [sensor_ids, sensor_id_to_ind, adj_mx]"
    if not isinstance(obj, (list, tuple)) or len(obj) != 3:
        size = f" of {len(obj)} items" if isinstance(obj, (list, tuple)) else ""
        raise DataError(f"{path}: holds a {type(obj).__name__}{size}; {expected}")
    ids, to_ind, adj = obj
    if not isinstance(ids, (list, tuple)) or not all(
            isinstance(i, (str, bytes, int, np.integer)) for i in ids):
        raise DataError(f"{path}: sensor_ids is not a list of ids; {expected}")
    ids = tuple(i.decode("latin1") if isinstance(i, bytes) else _id_str(i) for i in ids)
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: sensor_ids has duplicates")
    if not isinstance(to_ind, dict):
        raise DataError(f"{path}: sensor_id_to_ind is a {type(to_ind).__name__}, not a dict; "
                        f"{expected}")
    if {_id_str(k): v for k, v in to_ind.items()} != {s: i for i, s in enumerate(ids)}:
        raise DataError(f"{path}: sensor_id_to_ind disagrees with the order of sensor_ids")
    if not isinstance(adj, np.ndarray) or adj.shape != (len(ids), len(ids)):
        shape = getattr(adj, "shape", type(adj).__name__)
        raise DataError(f"{path}: adj_mx has shape {shape} for {len(ids)} sensor ids; {expected}")
    if not np.issubdtype(adj.dtype, np.number):
        raise DataError(f"{path}: adj_mx holds {adj.dtype} values, not numbers")
    return ids, _check_weights(adj.astype(np.float64), path)


def adjacency_from_edges(num_nodes: int, src: np.ndarray, dst: np.ndarray, cost: np.ndarray,
                         symmetric: bool = True, edge_weights: str = "gaussian") -> np.ndarray:
    """``[N, N]`` weights from an edge list, diagonal 1.

    ``gaussian``: DCRNN's kernel of the distance (``stforecast.graph.gaussian_kernel``, sigma =
    std of the known distances, weights below 0.1 cut). ``binary``: 1 per listed link.
    ``symmetric`` also sets the reverse direction of every link (keeping the shorter distance
    where both are listed): ASTGCN's lists name most road links once, while DCRNN's distance
    files are directed and complete, so reproducing DCRNN needs ``symmetric=False``.
    """
    if edge_weights == "gaussian":
        return gaussian_kernel(edges_to_distances(num_nodes, src, dst, cost, symmetric=symmetric))
    if edge_weights == "binary":
        adj = np.eye(num_nodes, dtype=np.float32)
        adj[src, dst] = 1.0
        if symmetric:
            adj[dst, src] = 1.0
        return adj
    raise ValueError(f"edge_weights must be one of {', '.join(EDGE_WEIGHTS)}, got {edge_weights!r}")


def _edge_nodes(names: pd.Series, sensor_ids: Sequence[str] | None, n: int | None,
                path: Path) -> tuple[np.ndarray, int]:
    """Edge endpoints as row indices: by sensor id when all are ids, else as 0-based indices."""
    names = names.map(_id_str)
    if sensor_ids:
        position = {s: i for i, s in enumerate(sensor_ids)}
        if names.isin(position).all():
            return names.map(position).to_numpy(np.int64), len(sensor_ids)
    numbers = pd.to_numeric(names, errors="coerce").to_numpy(np.float64)
    whole = np.isfinite(numbers) & (np.mod(numbers, 1) == 0) & (numbers >= 0)
    if n is None and whole.all():
        n = int(numbers.max()) + 1
    ok = whole & (numbers < (n or 0))
    if not ok.all():
        unknown = list(dict.fromkeys(names[~ok]))
        expected = "sensor ids of the series nor " if sensor_ids else ""
        expected += f"0-based indices below {n}" if n else "0-based indices"
        raise DataError(f"{path}: edge list names node(s) {_list(unknown)} that are neither "
                        f"{expected}")
    return numbers.astype(np.int64), int(n)


def _is_text(cell: object) -> bool:
    """A non-empty cell that is not a number: header text."""
    if pd.isna(cell) or not str(cell).strip():
        return False
    try:
        float(str(cell))
        return False
    except ValueError:
        return True


def _read_adjacency_csv(path: Path, sensor_ids: Sequence[str] | None, num_nodes: int | None,
                        symmetric: bool, edge_weights: str) -> np.ndarray:
    """A square matrix (header and label column optional) or a ``from,to,cost`` edge list.

    The layout follows from the shape, so that a stray text cell is reported as such rather
    than taken for a header: N x N is a bare matrix, (N+1) x N has a header row, N x (N+1) a
    label column, and a 3-column file that cannot be a matrix is an edge list.
    """
    raw = _read_csv(path, header=None, dtype=str, skipinitialspace=True)
    rows, cols = raw.shape
    first = raw.iloc[0]
    # Only 3 x 3, or 4 x 3 with a header, can be a matrix with 3 columns.
    if cols == 3 and (str(first.iloc[0]).strip().lower() == "from" or rows not in (3, 4)
                      or (rows == 3 and any(map(_is_text, first)))
                      or (rows == 4 and not _is_text(first.iloc[2]))):
        return _read_edge_list(raw, path, sensor_ids, num_nodes, symmetric, edge_weights)

    header = label_col = False
    if rows == cols:
        # pandas' to_csv of a labelled matrix: empty corner, the same unique ids on both edges
        corner = pd.isna(first.iloc[0]) or not str(first.iloc[0]).strip()
        top, side = list(first.iloc[1:]), list(raw.iloc[1:, 0])
        header = label_col = corner and rows > 2 and top == side and len(set(top)) == len(top)
    elif rows == cols + 1:
        header = True
    elif cols == rows + 1:
        label_col = True
    else:
        raise DataError(f"{path}: neither a square matrix nor a from,to,cost edge list "
                        f"({rows} rows x {cols} columns)")
    body = raw.iloc[int(header):, int(label_col):]
    ids = [_id_str(c) for c in first.iloc[int(label_col):]] if header else (
        [_id_str(c) for c in raw.iloc[:, 0]] if label_col else None)
    adj = _check_weights(_numeric(body, path, first_line=1 + int(header)), path)
    if ids and sensor_ids and set(ids) & set(sensor_ids):  # the labels name sensors
        if len(ids) != len(sensor_ids) or set(ids) != set(sensor_ids):
            missing = [s for s in sensor_ids if s not in set(ids)]
            raise DataError(f"{path}: labels name sensors of the series but not all of them "
                            f"(missing {_list(missing) or 'none'}; {len(ids)} labels for "
                            f"{len(sensor_ids)} sensors)")
        order = [ids.index(s) for s in sensor_ids]
        adj = adj[np.ix_(order, order)]
    return adj


def _read_edge_list(raw: pd.DataFrame, path: Path, sensor_ids: Sequence[str] | None,
                    num_nodes: int | None, symmetric: bool, edge_weights: str) -> np.ndarray:
    """``from,to,cost`` rows (header optional) into weights by ``adjacency_from_edges``."""
    header = _is_text(raw.iat[0, 2])
    body = raw.iloc[int(header):]
    first_line = 1 + int(header)
    if body.empty:
        raise DataError(f"{path}: edge list has no rows")
    cost = _numeric(body.iloc[:, [2]], path, first_line)[:, 0].astype(np.float64)
    if not np.isfinite(cost).all():
        i = int(np.argmax(~np.isfinite(cost)))
        raise DataError(f"{path}: edge list has no usable cost at line {first_line + i}")
    if (cost < 0).any():
        i = int(np.argmax(cost < 0))
        raise DataError(f"{path}: negative cost {cost[i]} at line {first_line + i}")
    ends = pd.concat([body.iloc[:, 0], body.iloc[:, 1]], ignore_index=True)
    if ends.isna().any():
        i = int(np.argmax(ends.isna().to_numpy())) % len(body)
        raise DataError(f"{path}: edge list has an empty node at line {first_line + i}")
    nodes, n = _edge_nodes(ends, sensor_ids, num_nodes, path)
    src, dst = nodes[:len(body)], nodes[len(body):]
    try:
        return adjacency_from_edges(n, src, dst, cost, symmetric, edge_weights)
    except ValueError as exc:
        raise DataError(f"{path}: cannot build a graph from the edge list ({exc})") from exc


def _read_adjacency_npy(path: Path) -> np.ndarray:
    _require_file(path)
    try:
        with open(path, "rb") as fh:
            _check_npy_header(fh, path, os.fstat(fh.fileno()).st_size)
            fh.seek(0)
            adj = np.load(fh, allow_pickle=False)
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as .npy ({_brief(exc)})") from exc
    if not isinstance(adj, np.ndarray) or not np.issubdtype(adj.dtype, np.number):
        raise DataError(f"{path}: expected a numeric [N, N] array")
    return _check_weights(adj.astype(np.float64), path)


def read_adjacency(path: Path, sensor_ids: Sequence[str] | None = None,
                   num_nodes: int | None = None, *, symmetric: bool = True,
                   edge_weights: str = "gaussian") -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Read any supported adjacency file into ``[N, N]`` float32.

    ``sensor_ids`` / ``num_nodes`` describe the series: an edge list needs them to place its
    nodes, and a matrix header naming the same ids puts rows in that order. Returns the matrix
    and, for a DCRNN pickle only, the sensor ids that order its rows (the series must then be
    matched to them); ``None`` means the rows already follow the series.
    """
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        ids, adj = read_dcrnn_pickle(path)
        return adj, ids
    if suffix == ".npy":
        return _read_adjacency_npy(path), None
    if suffix in (".csv", ".txt"):
        return _read_adjacency_csv(path, sensor_ids, num_nodes, symmetric, edge_weights), None
    raise DataError(f"{path}: unknown adjacency format '{path.suffix}' "
                    f"(expected .csv, .npy or .pkl)")


# --------------------------------------------------------------------------- options

@dataclass(frozen=True)
class _Options:
    """Settings shared by the manifest, ``load_path`` keywords and the named loaders."""

    name: str | None = None
    start: str = "2000-01-03 00:00"
    interval_minutes: int | None = None       # None: from the timestamps, else 5
    null_value: float = 0.0
    units: str = "units not stated"
    symmetric: bool = True
    edge_weights: str = "gaussian"
    meta: dict = field(default_factory=dict)  # provenance added to Dataset.meta


OPTION_KEYS = ("adjacency", "start", "interval_minutes", "null_value", "units", "name",
               "symmetric", "edge_weights")


def _option(key: str, value: object, where: str, base: Path | None) -> object:
    """One option, type-checked; paths from a manifest are relative to its folder."""
    bad = f"{where}: {key}={_short(value)} "
    if key in ("series", "adjacency"):
        if not isinstance(value, (str, Path)) or not str(value).strip():
            raise DataError(bad + "must be a file path")
        path = Path(value)
        return base / path if base is not None and not path.is_absolute() else path
    if key in ("name", "units"):
        if not isinstance(value, str) or not value.strip():
            raise DataError(bad + "must be non-empty text")
        return value.strip()
    if key == "start":
        if not isinstance(value, (str, dt.date, pd.Timestamp, np.datetime64)):
            raise DataError(bad + "must be a date/time such as '2012-03-01 00:00'")
        try:
            return pd.Timestamp(value).isoformat()
        except (ValueError, TypeError) as exc:
            raise DataError(bad + "is not a date/time such as '2012-03-01 00:00'") from exc
    if key == "interval_minutes":
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise DataError(bad + "must be a positive whole number of minutes")
        return int(value)
    if key == "null_value":
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "nan")):
            return float("nan")  # no marker: only NaN (empty) cells are missing
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("inf")
        if isinstance(value, bool) or np.isinf(number):
            raise DataError(bad + "must be a finite number (missing readings are stored as it) "
                                  "or none (zeros are values; only empty cells are missing)")
        return number
    if key == "symmetric":
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        if not isinstance(value, bool):
            raise DataError(bad + "must be true or false")
        return value
    if key == "edge_weights":
        if value not in EDGE_WEIGHTS:
            raise DataError(bad + f"must be one of {', '.join(EDGE_WEIGHTS)}")
        return value
    raise DataError(f"{where}: unknown option {key!r}; options: {', '.join(OPTION_KEYS)}")


def _options(raw: dict, where: str, allowed: Sequence[str],
             base: Path | None = None) -> dict:
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        raise DataError(f"{where}: unknown option {unknown[0]!r}; options: {', '.join(allowed)}")
    return {k: _option(k, v, where, base) for k, v in raw.items()}


class _ManifestLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DataError(f"duplicate key {_short(key)} at line {seen[key]} "
                                        f"and line {line}")
                    seen[key] = line
                except TypeError:
                    continue
        return super().construct_mapping(node, deep)


def _short(value: object, limit: int = 60) -> str:
    """A bounded ``repr`` for messages: a value from a file may be huge (an alias bomb)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlevel, r.maxlist, r.maxdict = 2, 4, 4
    return r.repr(value).encode("unicode_escape").decode("ascii")[:2 * limit]


def _read_manifest(path: Path) -> dict:
    """``dataset.yaml`` as checked options plus ``series``; unknown keys are errors."""
    _require_file(path)
    loader = None
    try:
        loader = _ManifestLoader(path.read_text(encoding="utf-8"))
        spec = loader.get_single_data()
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise DataError(f"{path}: cannot read as YAML ({_brief(exc)})") from exc
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(spec, dict):
        raise DataError(f"{path}: expected a mapping with keys such as series: and adjacency:")
    if "series" not in spec:
        raise DataError(f"{path}: needs series: (the series file, relative to this folder)")
    return _options({str(k): v for k, v in spec.items()}, str(path), ("series", *OPTION_KEYS),
                    base=path.parent)


# --------------------------------------------------------------------------- assembly

def _align(series: _Series, adj: np.ndarray, adj_ids: tuple[str, ...] | None,
           adj_path: Path) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Put the series columns in the graph's order when the graph names its sensors."""
    values, ids = series.values, series.sensor_ids
    if adj_ids is not None and ids is not None:
        if len(ids) != len(adj_ids) or set(ids) != set(adj_ids):
            have = set(ids)
            missing = [s for s in adj_ids if s not in have]
            extra = [s for s in ids if s not in set(adj_ids)]
            parts = []
            if missing:
                parts.append(f"lacks sensors {_list(missing)} of {adj_path.name}")
            if extra:
                parts.append(f"has sensors {_list(extra)} that {adj_path.name} does not list")
            raise DataError(f"{series.path}: {'; '.join(parts) or 'duplicate sensor ids'} "
                            f"({len(ids)} in the series, {len(adj_ids)} in the graph)")
        position = {s: i for i, s in enumerate(ids)}
        values = values[:, [position[s] for s in adj_ids]]
        ids = adj_ids
    elif adj.shape[0] != values.shape[1]:
        raise DataError(f"{adj_path}: adjacency is {adj.shape[0]} x {adj.shape[1]} but "
                        f"{series.path} has {values.shape[1]} sensors")
    return values, adj_ids or ids


def _regularise(series: _Series, values: np.ndarray, opts: _Options
                ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Values on an even time grid: (values, timestamps, interval_minutes, inserted steps)."""
    steps = len(values)
    if series.timestamps is None:
        interval = opts.interval_minutes or 5
        first = np.datetime64(opts.start, "ns")
        return values, first + np.arange(steps) * np.timedelta64(interval, "m"), interval, 0
    ts = series.timestamps
    if steps < 2:
        return values, ts, opts.interval_minutes or 5, 0
    gaps = np.diff(ts).astype("timedelta64[s]").astype(np.int64)
    if (gaps <= 0).any():
        i = int(np.argmax(gaps <= 0))
        raise DataError(f"{series.path}: timestamps do not increase at row {i + 2} "
                        f"({ts[i]} then {ts[i + 1]})")
    step = int(gaps.min())
    if step % 60:
        raise DataError(f"{series.path}: timestamps {step} s apart are not whole minutes")
    interval = step // 60
    if opts.interval_minutes is not None and opts.interval_minutes != interval:
        raise DataError(f"{series.path}: timestamps are {interval} minutes apart but "
                        f"interval_minutes={opts.interval_minutes}")
    if (gaps % step).any():
        i = int(np.argmax(gaps % step != 0))
        raise DataError(f"{series.path}: timestamp {ts[i + 1]} at row {i + 2} is off the "
                        f"{interval}-minute grid")
    position = ((ts - ts[0]).astype("timedelta64[s]").astype(np.int64) // step)
    total = int(position[-1]) + 1
    if total > 2 * steps:
        raise DataError(f"{series.path}: timestamps span {total} {interval}-minute steps but "
                        f"hold only {steps}; more than half the series would be missing")
    if total > steps:  # absent steps become missing readings so time features stay true
        full = np.full((total, *values.shape[1:]), np.nan, dtype=np.float32)
        full[position] = values
        values = full
    stamps = ts[0] + np.arange(total) * np.timedelta64(interval, "m")
    return values, stamps, interval, total - steps


def _assemble(name: str, series: _Series, adj: np.ndarray, adj_ids: tuple[str, ...] | None,
              adj_path: Path, opts: _Options) -> Dataset:
    values, ids = _align(series, adj, adj_ids, adj_path)
    values, stamps, interval, inserted = _regularise(series, values, opts)
    values = np.where(np.isnan(values), np.float32(opts.null_value), values).astype(np.float32)
    meta = {"source": str(series.path), "series": str(series.path),
            "adjacency": str(adj_path), "inserted_steps": inserted, **opts.meta}
    return Dataset(name=name, values=values, adjacency=adj.astype(np.float32),
                   timestamps=stamps, interval_minutes=interval, null_value=opts.null_value,
                   sensor_ids=tuple(ids or ()), units=opts.units, meta=meta)


def _load(name: str, series_path: Path, adj_path: Path, opts: _Options) -> Dataset:
    series = _read_series(series_path)
    adj, adj_ids = read_adjacency(adj_path, series.sensor_ids, series.values.shape[1],
                                  symmetric=opts.symmetric, edge_weights=opts.edge_weights)
    return _assemble(name, series, adj, adj_ids, adj_path, opts)


# --------------------------------------------------------------------------- generic PATH

def _find(folder: Path, tiers: Sequence[Sequence[str]], exclude: Path | None = None
          ) -> Path | None:
    """The single file matching the first level of patterns that matches anything."""
    for patterns in tiers:
        found = sorted({p for pattern in patterns for p in folder.glob(pattern)
                        if p.is_file() and p != exclude})
        if len(found) > 1:
            raise DataError(f"{folder}: several files match {' / '.join(patterns)} "
                            f"({_list([p.name for p in found])}); name the ones to use in "
                            f"{folder / MANIFEST}")
        if found:
            return found[0]
    return None


def _find_adjacency(folder: Path, series_path: Path) -> Path:
    """The adjacency beside a series by the well-known names; an error naming them if none."""
    tiers = list(ADJACENCY_PATTERNS)
    if series_path.suffix.lower() != ".csv":
        tiers.append((f"{series_path.stem}.csv",))
    found = _find(folder, tiers, exclude=series_path)
    if found is None:
        looked = " / ".join(p for tier in tiers for p in tier)
        raise DataError(f"{folder}: no adjacency file for {series_path.name} (looked for "
                        f"{looked}); add one, name it in {MANIFEST}, or pass adjacency=PATH")
    return found


def load_path(path: Path, **options) -> Dataset:
    """Load a user's dataset from a folder or a series file; see the module docstring."""
    path = Path(path)
    given = _options(options, str(path), OPTION_KEYS)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    settings: dict = {}
    if path.is_dir():
        folder, default_name = path, path.name
        manifest = path / MANIFEST
        if manifest.is_file():
            settings = _read_manifest(manifest)
            series_path = settings.pop("series")
        else:
            series_path = _find(path, SERIES_PATTERNS)
            if series_path is None:
                looked = " / ".join(p for tier in SERIES_PATTERNS for p in tier)
                raise DataError(f"{path}: no series file found (looked for {looked}); add a "
                                f"{MANIFEST} naming series: and adjacency:")
    else:
        folder, default_name, series_path = path.parent, path.stem, path
    _require_file(series_path)
    settings.update(given)
    adj_path = settings.pop("adjacency", None) or _find_adjacency(folder, series_path)
    opts = replace(_Options(), **settings)
    return _load(opts.name or default_name, series_path, adj_path,
                 replace(opts, meta={"path": str(path),
                                     "null_value_stated": "null_value" in settings}))


# --------------------------------------------------------------------------- named datasets

def load_los_loop(folder: Path) -> Dataset:
    """One week of METR-LA: 2016 steps x 207 sensors, 5-minute speeds in mph, 2012-03-01..07.

    Gaps were already filled by linear interpolation, so 0% is missing; the adjacency is the
    symmetrised DCRNN METR-LA graph.
    """
    opts = _Options(start="2012-03-01 00:00", units="mph",
                       meta={"files": ["los_speed.csv", "los_adj.csv"], "source": str(folder)})
    return _load("los-loop", folder / "los_speed.csv", folder / "los_adj.csv", opts)


def load_sz_taxi(folder: Path) -> Dataset:
    """T-GCN's SZ-taxi: 2976 steps x 156 roads of Shenzhen's Luohu district, 15-minute taxi
    speeds in km/h, 2015-01-01..31. A zero means no taxi was observed on the road in that
    interval (24.8 % of the cells), so 0 is the missing marker; the graph is the published
    directed 0/1 road connectivity, used as given."""
    opts = _Options(start="2015-01-01 00:00", interval_minutes=15, units="km/h",
                    meta={"files": ["sz_speed.npz", "sz_adj.csv"], "source": str(folder)})
    return _load("sz-taxi", folder / "sz_speed.npz", folder / "sz_adj.csv", opts)


def _load_dcrnn(folder: Path, name: str, h5: str, pkl: str, start: str) -> Dataset:
    series = _read_series_h5(folder / h5)
    ids, adj = read_dcrnn_pickle(folder / pkl)
    opts = _Options(start=start, units="mph",
                       meta={"files": [h5, pkl], "source": str(folder)})
    return _assemble(name, series, adj, ids, folder / pkl, opts)


def load_metr_la(folder: Path) -> Dataset:
    """DCRNN's METR-LA: 34,272 steps x 207 Los Angeles sensors, 5-minute speeds in mph,
    2012-03-01..06-27; about 8% of readings are 0.0 (missing). Graph: ``adj_mx.pkl``."""
    return _load_dcrnn(folder, "metr-la", "metr-la.h5", "adj_mx.pkl", "2012-03-01 00:00")


def load_pems_bay(folder: Path) -> Dataset:
    """DCRNN's PEMS-BAY: 52,116 rows x 325 Bay Area sensors, 5-minute speeds in mph,
    2017-01-01..06-30, almost nothing missing; steps absent from the index are inserted as
    missing. Graph: ``adj_mx_bay.pkl``."""
    return _load_dcrnn(folder, "pems-bay", "pems-bay.h5", "adj_mx_bay.pkl", "2017-01-01 00:00")


def _load_pems(folder: Path, name: str, stem: str, start: str, options: dict) -> Dataset:
    given = _options(options, str(folder), ("edge_weights", "symmetric"))
    npz, csv = folder / f"{stem}.npz", folder / f"{stem}.csv"
    series = _read_series_npz(npz)
    if series.values.shape[2] != 3:
        raise DataError(f"{npz}: expected [T, N, 3] (flow, occupancy, speed), got shape "
                        f"{series.values.shape}")
    opts = replace(_Options(start=start, units="vehicles/5min"), **given)
    adj, _ = read_adjacency(csv, None, series.values.shape[1], symmetric=opts.symmetric,
                            edge_weights=opts.edge_weights)
    opts = replace(opts, meta={"files": [npz.name, csv.name], "source": str(folder),
                               "features": ["flow", "occupancy", "speed"],
                               "edge_weights": opts.edge_weights, "symmetric": opts.symmetric})
    return _assemble(name, series, adj, None, csv, opts)


def load_pems04(folder: Path, **options) -> Dataset:
    """PeMS District 4 (ASTGCN): 16,992 steps x 307 sensors x (flow, occupancy, speed),
    5-minute steps from 2018-01-01; target flow in vehicles/5min, 0.0 = missing."""
    return _load_pems(folder, "pems04", "PEMS04", "2018-01-01 00:00", options)


def load_pems08(folder: Path, **options) -> Dataset:
    """PeMS District 8 (ASTGCN): 17,856 steps x 170 sensors x (flow, occupancy, speed),
    5-minute steps from 2016-07-01; target flow in vehicles/5min, 0.0 = missing."""
    return _load_pems(folder, "pems08", "PEMS08", "2016-07-01 00:00", options)


_DCRNN = "https://github.com/liyaguang/DCRNN"
_ASTGCN = "https://github.com/Davidham3/ASTGCN-2019-mxnet"
_STSGCN = "https://github.com/Davidham3/STSGCN"

register_dataset(DatasetEntry(
    name="los-loop",
    summary="one real week of METR-LA (2012-03-01..07), 207 sensors, 5-min speeds in mph",
    load=load_los_loop,
    files=("los_speed.csv", "los_adj.csv"),
    published="https://github.com/lehaifeng/T-GCN (data/los_speed.csv, data/los_adj.csv)",
))

register_dataset(DatasetEntry(
    name="sz-taxi",
    summary="one month of taxi speeds on 156 Shenzhen roads (2015-01), 15-min, km/h, "
            "0 = not observed",
    load=load_sz_taxi,
    files=("sz_speed.npz", "sz_adj.csv"),
    published=("https://github.com/lehaifeng/T-GCN (data/sz_speed.csv, data/sz_adj.csv; the "
               "speeds as an NPZ array 'data' [2976, 156, 1] named sz_speed.npz)"),
))

register_dataset(DatasetEntry(
    name="metr-la",
    summary="DCRNN METR-LA: 207 Los Angeles sensors, 2012-03-01..06-27, 5-min speeds in mph",
    load=load_metr_la,
    files=("metr-la.h5", "adj_mx.pkl"),
    published=(f"the DCRNN README, {_DCRNN} (metr-la.h5 through its Google Drive / Baidu "
               f"links; adj_mx.pkl in data/sensor_graph/); reading .h5 needs {HDF5_HINT}"),
))

register_dataset(DatasetEntry(
    name="pems-bay",
    summary="DCRNN PEMS-BAY: 325 Bay Area sensors, 2017-01-01..06-30, 5-min speeds in mph",
    load=load_pems_bay,
    files=("pems-bay.h5", "adj_mx_bay.pkl"),
    published=(f"the DCRNN README, {_DCRNN} (pems-bay.h5 through its Google Drive / Baidu "
               f"links; adj_mx_bay.pkl in data/sensor_graph/); reading .h5 needs {HDF5_HINT}"),
))

for _name, _stem, _summary in (
    ("pems04", "PEMS04", "PeMS D4 (ASTGCN): 307 sensors, 2018-01-01..02-28, 5-min flow"),
    ("pems08", "PEMS08", "PeMS D8 (ASTGCN): 170 sensors, 2016-07-01..08-31, 5-min flow"),
):
    register_dataset(DatasetEntry(
        name=_name,
        summary=_summary + " (+ occupancy, speed); Gaussian-kernel graph of road distance",
        load=load_pems04 if _name == "pems04" else load_pems08,
        files=(f"{_stem}.npz", f"{_stem}.csv"),
        published=(f"ASTGCN, {_ASTGCN} (data/{_stem}/: the .npz and distance.csv, saved as "
                   f"{_stem}.npz and {_stem}.csv) or STSGCN's data archive, {_STSGCN} "
                   f"(data/{_stem}/{_stem}.npz, {_stem}.csv)"),
        options=("edge_weights", "symmetric"),
    ))

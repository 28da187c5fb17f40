"""A profile's windowed dataset, loaded once per process and device.

Every job of a grid trains on the same data; worker processes (``--jobs N``, Ray tasks) each
load it once and keep it resident, so a grid of 30 runs reads its files a handful of times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.config import to_dict
from bench.profile import Profile
from stforecast.datasets import default_data_dir, load_dataset
from stforecast.datasets.registry import is_path
from stforecast.windows import SplitConfig, WindowedData

_CACHE: dict[tuple, WindowedData] = {}


def _files_stamp(name: str, data_dir: str | None) -> tuple:
    """Size and modification time of every file the dataset may read, so that a file edited
    while a process lives (tests, notebooks) is loaded again, not served from the cache."""
    path = Path(name) if is_path(name) else Path(data_dir or default_data_dir()) / name
    files = [path] if path.is_file() else sorted(path.glob("*")) if path.is_dir() else []
    if path.is_file():
        files += sorted(path.parent.glob("*"))
    out = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


def load_data(profile: Profile, device: torch.device) -> WindowedData:
    """The windowed dataset of a profile on ``device``; ``DataError`` names what is wrong."""
    ds = profile.dataset
    key = (repr(to_dict(ds)), str(device), _files_stamp(ds.name, ds.data_dir))
    if key not in _CACHE:
        for old in [k for k in _CACHE if k[:2] == key[:2]]:  # an earlier version of the files
            del _CACHE[old]
        dataset = load_dataset(ds.name, ds.data_dir, ds.options)
        split = SplitConfig(ds.train_fraction, ds.val_fraction, ds.input_len, ds.output_len)
        _CACHE[key] = WindowedData(dataset, split, device)
    return _CACHE[key]


def data_facts(data: WindowedData) -> dict:
    """What a reader needs to know about the data, for the start line, the experiment record
    and the report: name, units, size, interval, span, the missing-value marker and the share
    of targets it hides per split."""
    ds = data.dataset
    stamps = np.asarray(ds.timestamps, dtype="datetime64[m]")
    splits = {}
    for name, (lo, hi) in data.bounds.items():
        splits[name] = {"steps": hi - lo, "windows": data.num_windows(name),
                        "missing_share": float(1.0 - ds.mask[lo:hi].mean())}
    return {"name": ds.name, "units": ds.units, "nodes": ds.num_nodes, "steps": ds.num_steps,
            "interval_minutes": ds.interval_minutes, "start": str(stamps[0]).replace("T", " "),
            "end": str(stamps[-1]).replace("T", " "),
            "days": ds.num_steps * ds.interval_minutes / 1440, "null_value": ds.null_text,
            "null_value_stated": bool(ds.meta.get("null_value_stated", True)),
            "splits": splits}


def interval_text(minutes: int) -> str:
    """``5-minute``, ``hourly``, ``15-minute``, ``daily``."""
    if minutes == 60:
        return "hourly"
    if minutes == 1440:
        return "daily"
    if minutes % 60 == 0:
        return f"{minutes // 60}-hour"
    return f"{minutes}-minute"


def ahead_text(steps: int, minutes: int) -> str:
    """How far ahead the ``steps``-th predicted step lies: ``15 min``, ``3 h``, ``2 days``."""
    total = steps * minutes
    if total % 1440 == 0:
        days = total // 1440
        return f"{days} day" + ("s" if days != 1 else "")
    if total % 60 == 0:
        return f"{total // 60} h"
    return f"{total} min"


def data_line(facts: dict) -> str:
    """The one line ``bench run`` prints about the data before it trains anything."""
    s = facts["splits"]
    shares = ", ".join(f"{k} {100 * s[k]['missing_share']:.1f} %" for k in ("train", "val", "test"))
    return (f"data: {facts['name']}, {facts['nodes']} nodes x {facts['steps']} steps of "
            f"{facts['interval_minutes']} min ({facts['start']} to {facts['end']}, "
            f"{facts['days']:.1f} days), "
            f"{facts['units']}; split {s['train']['steps']}/{s['val']['steps']}/"
            f"{s['test']['steps']} steps; targets treated as missing (marker "
            f"{facts['null_value']}): {shares}")


MISSING_WARNING_SHARE = 0.2


def missing_warning(facts: dict) -> str | None:
    """A warning when the marker hides more than 20 % of the training targets and the data
    did not state its marker; a note when it did (METR-LA-style zeros that mean missing)."""
    share = facts["splits"]["train"]["missing_share"]
    if share <= MISSING_WARNING_SHARE:
        return None
    marker = facts["null_value"]
    if facts["null_value_stated"]:
        return (f"note: {100 * share:.1f} % of the training targets are missing (marker "
                f"{marker}, as the dataset states); they are left out of the loss and metrics")
    return (f"warning: the missing-value marker {marker} (the default) hides "
            f"{100 * share:.1f} % of the training targets, which are left out of the loss "
            f"and every metric; if these are real values, set `null_value: none` in the "
            f"dataset's dataset.yaml (or the profile's dataset.options) so that only empty "
            f"cells count as missing")

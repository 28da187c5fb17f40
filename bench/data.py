"""A profile's windowed dataset, loaded once per process and device.

Every job of a grid trains on the same data; worker processes (``--jobs N``, Ray tasks) each
load it once and keep it resident, so a grid of 30 runs reads its files a handful of times.
"""

from __future__ import annotations

import torch

from bench.config import to_dict
from bench.profile import Profile
from stforecast.datasets import load_dataset
from stforecast.windows import SplitConfig, WindowedData

_CACHE: dict[tuple, WindowedData] = {}


def load_data(profile: Profile, device: torch.device) -> WindowedData:
    """The windowed dataset of a profile on ``device``; ``DataError`` names what is wrong."""
    ds = profile.dataset
    key = (repr(to_dict(ds)), str(device))
    if key not in _CACHE:
        dataset = load_dataset(ds.name, ds.data_dir, ds.options)
        split = SplitConfig(ds.train_fraction, ds.val_fraction, ds.input_len, ds.output_len)
        _CACHE[key] = WindowedData(dataset, split, device)
    return _CACHE[key]

"""Datasets: the embedded ``synthetic-la`` generator and loaders for real formats.

See ``stforecast.datasets.base`` for the ``[T, N, F]`` layout every loader returns.
"""

from stforecast.datasets import loaders, synthetic  # noqa: F401  (register their datasets)
from stforecast.datasets.base import DataError, Dataset, time_index
from stforecast.datasets.registry import (
    dataset_names,
    default_data_dir,
    get_dataset,
    load_dataset,
)

__all__ = ["DataError", "Dataset", "dataset_names", "default_data_dir", "get_dataset",
           "load_dataset", "time_index"]

"""Datasets by name, plus ``--dataset PATH`` for a user's own files.

A named real dataset is read from ``<data_dir>/<name>/`` where ``data_dir`` is, in order, the
argument, the ``STBENCH_DATA`` environment variable, or ``./data``. Nothing is downloaded: when
files are absent the error names each file, the folder to place it in and where it is
published.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stforecast.datasets.base import DataError, Dataset


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    summary: str
    load: Callable[..., Dataset]   # load(folder: Path, **options) or load(**options) if embedded
    files: tuple[str, ...] = ()    # required files inside <data_dir>/<name>/; empty if embedded
    published: str = ""            # where a user gets the files
    options: tuple[str, ...] = ()  # keyword options the loader accepts


_DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    if entry.name in _DATASETS:
        raise ValueError(f"dataset '{entry.name}' is already registered")
    _DATASETS[entry.name] = entry
    return entry


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def get_dataset(name: str) -> DatasetEntry:
    if name not in _DATASETS:
        raise KeyError(f"unknown dataset '{name}'; known: {', '.join(dataset_names())} "
                       f"(or a path to your own files)")
    return _DATASETS[name]


def default_data_dir() -> Path:
    return Path(os.environ.get("STBENCH_DATA", "data"))


def is_path(name_or_path: str) -> bool:
    """A dataset argument names a path when it contains a separator or exists on disk."""
    return os.sep in name_or_path or "/" in name_or_path or Path(name_or_path).exists()


def load_dataset(name_or_path: str, data_dir: str | Path | None = None,
                 options: dict | None = None) -> Dataset:
    """Load a named dataset or a user's files; raise ``DataError`` naming what is missing."""
    options = dict(options or {})
    if name_or_path not in _DATASETS and is_path(name_or_path):
        from stforecast.datasets.loaders import load_path

        return load_path(Path(name_or_path), **options)
    try:
        entry = get_dataset(name_or_path)
    except KeyError as exc:
        raise DataError(exc.args[0]) from None
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise DataError(f"dataset '{entry.name}' has no option {', '.join(map(repr, unknown))}; "
                       f"options: {', '.join(entry.options) or 'none'}")
    if not entry.files:
        return entry.load(**options)
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = folder / entry.name
    missing = [f for f in entry.files if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"dataset '{entry.name}' needs {', '.join(missing)} in {folder}/ (not found); "
            f"get them from {entry.published} and place them there, or point --data-dir / "
            f"STBENCH_DATA at the folder that holds '{entry.name}/'"
        )
    return entry.load(folder, **options)

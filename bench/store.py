"""The results folder: atomic files, per-run state and the experiment-wide tables.

Layout of ``<results>/<experiment>/``::

    experiment.json        resolved dataset / model / training settings (guards mixing)
    grid.json              every (schedule, budget, seed) cell asked for, and the schedules
    baselines.csv          historical average and persistence, val and test
    epochs.csv             one row per (schedule, budget, seed, epoch)
    summary.csv            one row per (schedule, budget, seed)
    runs/<schedule>/<run>/ config.json (resolved config, hash, environment),
                           status.json, records.csv, checkpoint.pt, lock

Every file is written to a temporary name in the same folder, flushed to disk and renamed
over the target, so a reader (or a process killed mid-write) never sees half a file.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

SCHEMA_VERSION = 1
EPOCH_KEYS = ("schedule", "budget", "seed", "epoch")
SUMMARY_KEYS = ("schedule", "budget", "seed")


class StoreError(OSError):
    """A results file cannot be written (disk full, no permission); the message names it."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (never a finished file).

    Call it only while holding the lock that guards every writer of that folder."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def rows_to_csv(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """CSV text; columns default to the union of keys in first-seen order."""
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    return out.getvalue()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # shortest exact round trip
    return "" if value is None else value


class FileLock:
    """An exclusive ``flock`` on a file; the operating system drops it when the holder dies,
    so a killed process never leaves a stale lock behind. The holder's host and pid are
    written into the file for whoever wonders who holds it."""

    def __init__(self, path: Path, blocking: bool = True) -> None:
        self.path, self.blocking = Path(path), blocking
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False if non-blocking and someone else holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{platform.node()} {os.getpid()}\n".encode())
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


class RunDir:
    """Paths and state files of one training run."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.status = self.root / "status.json"
        self.records = self.root / "records.csv"
        self.checkpoint = self.root / "checkpoint.pt"
        self.lock = self.root / "lock"

    def read_status(self) -> dict | None:
        """The status dict, or None when absent; a damaged file raises ``ValueError``."""
        if not self.status.exists():
            return None
        try:
            status = read_json(self.status)
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.status}: unreadable ({exc})") from None
        if not isinstance(status, dict) or "status" not in status:
            raise ValueError(f"{self.status}: not a run status")
        return status

    def write_status(self, **status: Any) -> None:
        atomic_write_json(self.status, {"schema": SCHEMA_VERSION, **status})

    def write_records(self, rows: list[dict[str, Any]]) -> None:
        # A run that diverged in its first epoch still gets a header, so it reads as empty.
        atomic_write_text(self.records, rows_to_csv(rows, None if rows else ["epoch", "lr"]))

    def read_records(self) -> list[dict[str, Any]]:
        """Rows of ``records.csv`` with numbers parsed; a damaged file raises ``ValueError``."""
        import pandas as pd

        try:
            df = pd.read_csv(self.records)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.records}: unreadable ({exc})") from None
        if "epoch" not in df or "lr" not in df:
            raise ValueError(f"{self.records}: missing columns 'epoch'/'lr'")
        if df.isna().any().any() or list(df["epoch"]) != list(range(len(df))):
            raise ValueError(f"{self.records}: truncated or damaged (epochs "
                             f"{list(df['epoch'])[:3]}...)")
        return df.to_dict("records")

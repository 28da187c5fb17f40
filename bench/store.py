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
over the target, so a reader (or a process killed mid-write) never sees half a file; files
get the usual permissions for the umask (0644 under 022), like any file the user creates.

Nothing read back executes code. A run's ``status.json`` records the sha256 of the files it
vouches for (``config.json``, ``records.csv``, ``checkpoint.pt``), written after them; before
they are rewritten, the new checksums are recorded as ``pending``, so a process killed between
the writes leaves every file matching either the old or the new checksum. ``RunDir.verify``
checks them before a run is reused; ``read_records`` parses every cell with its type.

Every file is read through ``bench.safe_files``: run files relative to the experiment folder,
never through a link, never a FIFO, device or folder, and never past a size cap. A run folder
is reused only where its ``config.json`` describes the run its path names
(``RunDir.binding_problem``): a folder copied from another run is foreign.

A finished (or diverged) run may lack its ``checkpoint.pt``: its records are complete and
still verified, and committed records (``studies/``) are results folders kept without
checkpoints. Only extending such a run to a longer budget needs the weights; it is then
retrained from epoch 0.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import platform
import re
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from bench.escape import csv_cell
from bench.safe_files import Refused, parse_json, read_bytes, remove_entry

SCHEMA_VERSION = 2  # 2: status.json records the files' sha256 ("files", "pending")
RUN_FILES = ("config.json", "records.csv", "checkpoint.pt")
RUN_STATES = ("running", "finished", "diverged", "failed")
EPOCH_KEYS = ("schedule", "budget", "seed", "epoch")
SUMMARY_KEYS = ("schedule", "budget", "seed")


class StoreError(OSError):
    """A results file cannot be written (disk full, no permission); the message names it."""


class LockRefused(StoreError):
    """A lock that is not a regular file (a link, a folder, a FIFO): never written through."""


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


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename; the file gets
    ``0666 & ~umask`` (``mkstemp`` alone would leave it 0600)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())
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
        try:
            remove_entry(tmp)  # a folder or a link by that name too; never a link's target
        except OSError as exc:
            raise StoreError(f"cannot remove {tmp}: {exc.strerror or exc}") from exc
        removed.append(tmp)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def atomic_torch_save(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, torch_bytes(obj))


def load_weights_only(data: bytes, map_location=None) -> Any:
    """A checkpoint read with the safe unpickler: tensors and plain containers only, so a
    file that names any other callable is refused instead of executed (the refusal is the
    caller's to report: torch's warnings about the file's format are not shown)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)


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
    # Names are plain (schedules.registry.name_problem), so this changes no cell the suite
    # writes; it keeps any other text from being run by a spreadsheet.
    return "" if value is None else csv_cell(value)


class FileLock:
    """An exclusive ``flock`` on a file; the operating system drops it when the holder dies,
    so a killed process never leaves a stale lock behind. The holder's host and pid are
    written into the file for whoever wonders who holds it.

    The file is opened without following a link (``O_NOFOLLOW``): a lock that is a link, a
    folder, a FIFO or any other non-regular file (or a file with other hard links) is
    ``Refused``, never written through; ``replace=True`` (the writer of a results folder)
    removes such an entry instead, creates a fresh lock and records a note in ``notes``."""

    def __init__(self, path: Path, blocking: bool = True, replace: bool = False) -> None:
        self.path, self.blocking, self.replace = Path(path), blocking, replace
        self.fd: int | None = None
        self.notes: list[str] = []

    def _open(self) -> int:
        """A descriptor of the lock file, a regular file with one link, opened without
        following a link; ``Refused`` otherwise."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise Refused(self.path, f"{_kind(st.st_mode)}; a lock must be a regular file")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused(self.path, "a symbolic link, not followed; a lock must be a "
                                         "regular file") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            os.close(fd)
            why = (_kind(st.st_mode) if not stat.S_ISREG(st.st_mode)
                   else "a file with other hard links")
            raise Refused(self.path, f"{why}; a lock must be a regular file")
        os.set_blocking(fd, True)
        return fd

    def acquire(self) -> bool:
        """Take the lock; False if non-blocking and someone else holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = self._open()
            except Refused as exc:
                if not self.replace:
                    raise LockRefused(str(exc)) from None
                remove_entry(self.path)  # the entry itself, never what a link points to
                self.notes.append(f"{exc}; replaced by a fresh lock")
                fd = self._open()
        except Refused as exc:
            raise LockRefused(str(exc)) from None
        except StoreError:
            raise
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

    def held_at_path(self) -> bool:
        """Whether the file we hold locked is still the one at ``path`` (not deleted or
        replaced, e.g. with its folder, while we held it)."""
        if self.fd is None:
            return False
        try:
            ours, there = os.fstat(self.fd), os.stat(self.path)
        except OSError:
            return False
        return (ours.st_dev, ours.st_ino) == (there.st_dev, there.st_ino)

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


def _kind(mode: int) -> str:
    from bench.safe_files import _kind_of

    return _kind_of(mode)


class RunDir:
    """Paths and state files of one training run, and the checksums its status vouches for.

    ``sums`` holds the sha256 of each run file this object wrote or verified; every
    ``write_status`` records them as ``files``. ``write_files`` writes files and then the
    status, with the new checksums announced as ``pending`` first."""

    def __init__(self, root: Path, base: Path | None = None) -> None:
        self.root = Path(root)
        # The folder no read may leave: the experiment folder (run files are read without
        # following a link at any component below it). By default the folder above
        # ``runs/`` when the path has that shape, else the run folder itself.
        if base is None:
            parts = self.root.parts
            base = (self.root.parents[2] if len(parts) > 3 and parts[-3] == "runs"
                    else self.root)
        self.base = Path(base)
        self.config = self.root / "config.json"
        self.status = self.root / "status.json"
        self.records = self.root / "records.csv"
        self.checkpoint = self.root / "checkpoint.pt"
        self.lock = self.root / "lock"
        self.sums: dict[str, str] = {}
        self._last: dict | None = None  # the status as last written or adopted

    def read(self, name: str) -> bytes:
        """A run file's bytes (``bench.safe_files``: a regular file inside the experiment
        folder, no link followed, within its size cap); ``FileNotFoundError`` when absent,
        ``Refused`` (an ``OSError``) when refused."""
        return read_bytes(self.root / name, FILE_KINDS[name], self.base)

    def read_optional(self, name: str) -> bytes | None:
        """``read``, or None when absent; ``ValueError`` naming the file when unreadable."""
        try:
            return self.read(name)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ValueError(f"{self.root / name}: unreadable ({exc.strerror or exc})") \
                from None

    # -- status -------------------------------------------------------------------------
    def read_status(self) -> dict | None:
        """The status dict, or None when absent; a damaged file raises ``ValueError``."""
        data = self.read_optional("status.json")
        return None if data is None else parse_status(data, self.status)

    def write_status(self, **status: Any) -> None:
        doc = {"schema": SCHEMA_VERSION, **status, "files": dict(self.sums)}
        atomic_write_json(self.status, doc)
        self._last = doc

    @staticmethod
    def vouched_by(status: dict | None, name: str) -> set[str]:
        """The checksums ``status`` accepts for file ``name`` (recorded or pending)."""
        status = status or {}
        return {(status.get("files") or {}).get(name),
                (status.get("pending") or {}).get(name)} - {None}

    def vouched(self, name: str) -> set[str]:
        """The checksums the status last written or adopted accepts for file ``name``."""
        return self.vouched_by(self._last, name)

    def adopt(self, status: dict | None) -> None:
        """Continue from a status read back and verified: the checksums of the files now on
        disk become ours (a file that matched only the ``pending`` sum of a writer killed
        mid-way is vouched for from here on, not forgotten)."""
        self._last = status
        self.sums = {}
        for name in RUN_FILES:
            try:
                data = self.read(name)
            except OSError:
                continue
            if sha256_bytes(data) in self.vouched_by(status, name):
                self.sums[name] = sha256_bytes(data)

    def write_files(self, files: dict[str, bytes], **status: Any) -> None:
        """Write run files, then the status that vouches for them (see the module doc)."""
        new = {name: sha256_bytes(data) for name, data in files.items()}
        if self._last is not None:
            atomic_write_json(self.status, {**self._last, "pending": new})
        for name, data in files.items():
            atomic_write_bytes(self.root / name, data)
        self.sums.update(new)
        self.write_status(**status)

    def verify(self, status: dict | None, names: tuple[str, ...] = RUN_FILES) -> str | None:
        """The first problem with the run files ``status`` vouches for, or None.

        A file must match the checksum recorded for it (or the pending one); a file the status
        does not vouch for must not be there, and without a status neither records nor a
        checkpoint may be. A status written before checksums were recorded (schema 1) cannot
        vouch for anything: such a run is redone. A finished or diverged run may lack its
        checkpoint (committed records are results folders without checkpoints): it is
        complete, and only extending or resuming it needs the checkpoint (then it is trained
        again from epoch 0)."""
        if status is None:
            stray = [p.name for p in (self.records, self.checkpoint) if os.path.lexists(p)]
            return (f"{self.status}: missing, so {' and '.join(stray)} cannot be verified"
                    if stray else None)
        if status.get("schema", 1) < 2:
            return (f"{self.status}: written before run files carried checksums, so they "
                    "cannot be verified")
        for name in names:
            path = self.root / name
            want = self.vouched_by(status, name)
            try:
                data = self.read(name)
            except FileNotFoundError:
                if want and not (name == "checkpoint.pt"
                                 and status.get("status") in ("finished", "diverged")):
                    return f"{path}: missing (status.json records its checksum)"
                continue
            except OSError as exc:
                return f"{path}: unreadable ({exc.strerror or exc})"
            if not want:
                return f"{path}: not vouched for by status.json"
            if sha256_bytes(data) not in want:
                return f"{path}: checksum differs from status.json (edited or damaged)"
        return None

    # -- records ------------------------------------------------------------------------
    @staticmethod
    def records_bytes(rows: list[dict[str, Any]]) -> bytes:
        # A run that diverged in its first epoch still gets a header, so it reads as empty.
        return rows_to_csv(rows, None if rows else ["epoch", "lr"]).encode()

    def write_records(self, rows: list[dict[str, Any]]) -> None:
        data = self.records_bytes(rows)
        atomic_write_bytes(self.records, data)
        self.sums["records.csv"] = sha256_bytes(data)

    def read_records(self, data: bytes | None = None) -> list[dict[str, Any]]:
        """Rows of ``records.csv``, every cell parsed with its column's type (``epoch`` an
        integer counting from 0, every other column a finite number >= 0); a damaged file
        raises ``ValueError`` naming the line and column."""
        if data is None:
            try:
                data = self.read("records.csv")
            except OSError as exc:
                raise ValueError(f"{self.records}: unreadable ({exc.strerror or exc})") from None
        return parse_records(data, self.records)

    def binding_problem(self, status: dict | None, foreign_only: bool = False) -> str | None:
        """Why this folder is not the run its path names, or None.

        ``config.json`` (the one ``status.json`` vouches for) must describe the schedule,
        seed and epochs of the path ``runs/<schedule>/<run>`` and carry the ``config_hash``
        the status records: a folder copied from another run, with or without its
        ``config_hash`` edited, is foreign. A status without a config vouches for no run
        (nothing to reuse), and is not a problem by itself. With ``foreign_only``, only a
        readable, vouched-for config that names another run is a problem (the caller checks
        the rest, the config_hash included, its own way)."""
        if status is None:
            return None
        try:
            data = self.read_optional("config.json")
        except ValueError as exc:
            return None if foreign_only else str(exc)
        if data is None:
            has_results = any(self.vouched_by(status, n) for n in ("records.csv",
                                                                   "checkpoint.pt"))
            return (f"{self.config}: missing, so the run's records cannot be bound to this "
                    "folder" if has_results and not foreign_only else None)
        if sha256_bytes(data) not in self.vouched_by(status, "config.json"):
            return None if foreign_only else f"{self.config}: not the one status.json vouches for"
        try:
            doc = parse_json(data, self.config)
        except ValueError as exc:
            return None if foreign_only else str(exc)
        config = doc.get("config") if isinstance(doc, dict) else None
        if not isinstance(config, dict):
            return None if foreign_only else f"{self.config}: not a run config"
        want = run_of_path(self.root)
        schedule = config.get("schedule")
        found = (schedule.get("name") if isinstance(schedule, dict) else None,
                 config.get("seed"), config.get("epochs"))
        if want is None or found != want:
            from bench.escape import terminal

            return (f"{self.root}: foreign, its config.json describes another run (schedule "
                    f"'{terminal(found[0], 60)}', seed {terminal(found[1], 20)}, epochs "
                    f"{terminal(found[2], 20)}) than its folder names (copied from elsewhere)")
        if doc.get("config_hash") != status.get("config_hash") and not foreign_only:
            return (f"{self.root}: status.json's config_hash is not its config.json's (edited, "
                    "or copied from another run)")
        return None


FILE_KINDS = {"status.json": "status", "config.json": "run config",
              "records.csv": "records", "checkpoint.pt": "checkpoint"}
_RUN_NAME = re.compile(r"(?:e([0-9]{1,9})-)?seed([0-9]{1,10})")


def run_of_path(root: Path) -> tuple[str, int, int | None] | None:
    """``(schedule, seed, epochs)`` that ``runs/<schedule>/<run>`` names (epochs None for a
    shared-prefix run, ``bench.plan.Job.key``), or None when it names no run."""
    match = _RUN_NAME.fullmatch(Path(root).name)
    if match is None:
        return None
    epochs, seed = match.groups()
    return Path(root).parent.name, int(seed), None if epochs is None else int(epochs)


_HEX64 = re.compile(r"[0-9a-f]{64}")


def parse_status(data: bytes, where: Path) -> dict:
    """A run's status from its bytes, every key of known type; else ``ValueError``."""
    status = parse_json(data, where)
    if not isinstance(status, dict) or status.get("status") not in RUN_STATES:
        raise ValueError(f"{where}: not a run status")

    def bad(key: str, what: str) -> ValueError:
        return ValueError(f"{where}: {key} must be {what}, found {short_repr(status.get(key))}")

    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    for key in ("schema", "epochs_done", "target_epochs", "fused", "fork_epoch"):
        if key in status and not count(status[key]):
            raise bad(key, "an integer >= 0")
    if status.get("diverged_epoch") is not None and not count(status["diverged_epoch"]):
        raise bad("diverged_epoch", "an integer >= 0")
    for key in ("config_hash", "message", "traceback"):
        if key in status and not isinstance(status[key], str):
            raise bad(key, "a string")
    if "forked_from" in status and not (
            isinstance(status["forked_from"], str) and len(status["forked_from"]) <= 500
            and _is_run_key(status["forked_from"])):
        raise ValueError(f"{where}: forked_from must name a run (schedule/run)")
    for key in ("files", "pending"):
        sums = status.get(key, {})
        if not isinstance(sums, dict) or any(
                name not in RUN_FILES or not isinstance(v, str) or not _HEX64.fullmatch(v)
                for name, v in sums.items()):
            raise bad(key, f"a map of {', '.join(RUN_FILES)} to sha256 digests")
    if status["status"] in ("finished", "diverged") and "epochs_done" not in status:
        raise ValueError(f"{where}: {status['status']} without epochs_done")
    return status


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr`` of a value read from a file, bounded in work and length (``reprlib``) and
    with control characters escaped: an error message never holds an unbounded value."""
    import reprlib

    from bench.escape import terminal

    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlevel, r.maxlist, r.maxdict, r.maxtuple, r.maxset = 3, 6, 6, 6, 6
    return terminal(r.repr(value), limit)


def _is_run_key(key: str) -> bool:
    from bench.safe_files import name_problem

    schedule, _, run = key.partition("/")
    return name_problem(schedule) is None and _RUN_NAME.fullmatch(run) is not None


# The columns of ``stforecast.engine.EpochRecord.row()``.
RECORD_COLUMNS = ("epoch", "lr", "lr_end", "train_loss", "val_mae", "val_rmse", "val_mape",
                  "test_mae", "test_rmse", "test_mape", "seconds", "train_seconds",
                  "eval_seconds")
REQUIRED_COLUMNS = ("epoch", "lr", "val_mae", "test_mae", "seconds")  # what the tables use
_METRIC = re.compile(r"(val|test)_(mae|rmse|mape)(_h[0-9]+)?")
_INTEGER = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def parse_records(data: bytes, where: Path) -> list[dict[str, Any]]:
    """``records.csv`` from its bytes (see ``RunDir.read_records``)."""
    try:
        text = data.decode("utf-8")
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{where}: unreadable ({exc})") from None
    if not lines or not lines[0]:
        raise ValueError(f"{where}: empty or truncated (no header)")
    header = lines[0]
    if header[0] != "epoch" or "lr" not in header or len(set(header)) != len(header):
        raise ValueError(f"{where}: damaged header (expected epoch, lr, ...)")
    unknown = [c for c in header if c not in RECORD_COLUMNS and not _METRIC.fullmatch(c)]
    if unknown:
        raise ValueError(f"{where}: unexpected column {unknown[0]!r}")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if len(lines) > 1 and missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}")
    rows = []
    for line, cells in enumerate(lines[1:], start=2):
        if len(cells) != len(header):
            raise ValueError(f"{where}: line {line} has {len(cells)} of {len(header)} cells "
                             "(truncated or damaged)")
        row: dict[str, Any] = {}
        for column, cell in zip(header, cells):
            row[column] = _cell(cell, column, f"{where}: line {line}, column {column}")
        rows.append(row)
    epochs = [r["epoch"] for r in rows]
    if epochs != list(range(len(rows))):
        raise ValueError(f"{where}: epochs not 0, 1, 2, ... (found {epochs[:4]}"
                         f"{' ...' if len(epochs) > 4 else ''}; truncated or damaged)")
    return rows


def _cell(cell: str, column: str, where: str) -> int | float:
    if column == "epoch":
        if not _INTEGER.fullmatch(cell):
            raise ValueError(f"{where}: {cell[:40]!r} is not an epoch number")
        return int(cell)
    if not _NUMBER.fullmatch(cell):
        try:
            value = float(cell)
        except ValueError:
            raise ValueError(f"{where}: {cell[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{where}: {cell!r} is not finite")
        raise ValueError(f"{where}: {cell[:40]!r} is not a plain number")
    value = float(cell)
    if not math.isfinite(value):
        raise ValueError(f"{where}: {cell[:40]!r} is not finite")
    if value < 0:
        raise ValueError(f"{where}: {cell} is negative")
    return value

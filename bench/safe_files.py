"""One reader for every file the suite did not write in this process: results folders,
baselines, profiles and schedule files are untrusted input, down to their shape.

The rules hold here, by construction, rather than call site by call site (Python's
``tarfile`` data filter, PEP 706, is the model):

- **Nothing outside the root, nothing but regular files.** A file is opened relative to its
  root (the results folder, or the experiment folder for run files) one component at a time,
  never following a symbolic link (``O_NOFOLLOW`` at every step): a link, a FIFO, a device or
  a folder where a file is expected is ``Refused`` with the reason, and never opened. A file
  a user names on the command line (``--baseline``, ``--profile``) may be reached through
  links the user made, but must still be a regular file.
- **Bounded reads.** Every file is size-checked against the cap of its kind (``LIMITS``,
  stated here only, far above any real file) before it is read, and read no further than
  the cap; JSON is nested at most ``JSON_DEPTH`` deep (deeper, or Python's own recursion
  limit, is a parse error).
- **Names are names.** A schedule, run or experiment name read from a file passes the same
  rule as a name typed on the command line (``check_name``: the schedule registry's rule,
  which refuses path separators, control characters including CR, and the characters that
  would break a table or a spreadsheet cell).

``Refused`` is an ``OSError`` whose ``strerror`` says why, so code that reports an unreadable
file already reports a refused one; a missing file is ``FileNotFoundError`` as usual.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

MiB = 1 << 20

# The most bytes read from a file of each kind. Real files are far smaller (a 20,000-cell
# grid.json is about 1 MiB, a run's records some KiB, a checkpoint some MiB); a cap only
# keeps a hostile or damaged file (a 2 GB "status.json") from exhausting memory.
LIMITS: dict[str, int] = {
    "status": 1 * MiB,          # runs/*/*/status.json
    "run config": 16 * MiB,     # runs/*/*/config.json
    "records": 256 * MiB,       # runs/*/*/records.csv
    "checkpoint": 4096 * MiB,   # runs/*/*/checkpoint.pt
    "experiment": 16 * MiB,     # experiment.json
    "grid": 256 * MiB,          # grid.json
    "tuning": 64 * MiB,         # tuning.json
    "table": 2048 * MiB,        # epochs.csv, summary.csv
    "baselines": 16 * MiB,      # baselines.csv, a check baseline
    "yaml": 4 * MiB,            # profiles, schedule files, note configs
}
JSON_DEPTH = 64        # nesting of any JSON the suite reads back (its own files nest < 10)
NAME_BYTES = 200       # a name read from a file, in UTF-8 bytes (a file name allows 255)


class Refused(OSError):
    """A file that is not read: a link, not a regular file, outside its root or too large.
    ``strerror`` says which; ``str(exc)`` names the path too."""

    def __init__(self, path: Path | str, why: str) -> None:
        super().__init__(errno.EPERM, why)
        self.path = Path(path)

    def __str__(self) -> str:
        return f"{self.path}: {self.strerror}"


def _kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link, not followed"
    if stat.S_ISDIR(mode):
        return "a folder where a file is expected"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    return "not a regular file"


def _parts(path: Path | str, root: Path | str) -> tuple[str, ...]:
    """The components of ``path`` below ``root``; ``Refused`` for anything that leaves it.
    (String operations: this runs for every file of a grid of thousands of runs.)"""
    text, base = os.fspath(path), os.fspath(root).rstrip(os.sep) or os.sep
    if base in (".", ""):  # the current folder: any relative path below it
        prefix = ""
        if os.path.isabs(text):
            raise Refused(path, f"outside {root}, not read")
    else:
        prefix = base if base.endswith(os.sep) else base + os.sep
    if not text.startswith(prefix):
        raise Refused(path, f"outside {root}, not read")
    parts = tuple(text[len(prefix):].split(os.sep))
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise Refused(path, f"not a plain path inside {root}")
    return parts


def _open_dir(root: Path | str, parts: tuple[str, ...]) -> int:
    """A descriptor of ``root/parts...``, each component a real folder (no link followed
    below ``root``); ``Refused`` or ``FileNotFoundError`` naming the first bad component."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)
            except FileNotFoundError:
                raise
            except OSError as exc:
                try:
                    mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
                except OSError:
                    raise exc from None
                why = ("a file where a folder is expected" if stat.S_ISREG(mode)
                       else _kind_of(mode))
                raise Refused(Path(root, *parts[:i + 1]), why) from None
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_file(path: Path | str, root: Path | str | None) -> int:
    """A read-only descriptor of a regular file, opened without following links below
    ``root`` (without a root, at its last component only)."""
    if root is None:
        parent, name = os.path.split(os.fspath(path))
        if not name:
            raise Refused(path, "a folder where a file is expected")
        dfd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        parts = _parts(path, root)
        name = parts[-1]
        dfd = _open_dir(root, parts[:-1])
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(path, _kind_of(st.st_mode))
        # O_NONBLOCK: a file swapped for a FIFO after the check still cannot block the open.
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
    except OSError as exc:
        if isinstance(exc, (Refused, FileNotFoundError)):
            raise
        if exc.errno == errno.ELOOP:
            raise Refused(path, _kind_of(stat.S_IFLNK)) from None
        raise
    finally:
        os.close(dfd)
    return fd


def _open_user_file(path: Path) -> int:
    """A file the user named: links the user made are followed, but it must be a regular
    file (a FIFO or a device is refused before it is opened)."""
    path = Path(path)
    st = os.stat(path)  # FileNotFoundError as usual
    if not stat.S_ISREG(st.st_mode):
        raise Refused(path, _kind_of(st.st_mode))
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


def read_bytes(path: Path | str, kind: str, root: Path | str | None = None, *,
               follow: bool = False) -> bytes:
    """The bytes of a regular file of ``kind`` (a key of ``LIMITS``).

    With ``root``, every component of ``path`` below it must be a real folder and the file a
    regular one, none of them a link; without, ``follow=True`` reads a file the user named
    (links followed, still a regular file) and ``follow=False`` refuses a link at the last
    component. ``FileNotFoundError`` when absent, ``Refused`` (an ``OSError``) when refused."""
    limit = LIMITS[kind]
    fd = _open_user_file(Path(path)) if root is None and follow else _open_file(path, root)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between the check and the open
            raise Refused(path, _kind_of(st.st_mode))
        if st.st_size > limit:
            raise Refused(path, f"{st.st_size:,} bytes, over the {limit:,}-byte limit for a "
                                f"{kind} file")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise Refused(path, f"over the {limit:,}-byte limit for a {kind} file")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_optional(path: Path | str, kind: str, root: Path | str | None = None) -> bytes | None:
    """``read_bytes``, or None when the file (or a folder above it) is absent."""
    try:
        return read_bytes(path, kind, root)
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a component is a file: nothing can be below it
        return None


def read_text(path: Path | str, kind: str, root: Path | str | None = None, *,
              follow: bool = False) -> str:
    """``read_bytes`` decoded as UTF-8 (``UnicodeDecodeError`` is a ``ValueError``)."""
    return read_bytes(path, kind, root, follow=follow).decode("utf-8")


# -- JSON ---------------------------------------------------------------------------------
def depth(value: Any, limit: int = JSON_DEPTH) -> int:
    """The nesting depth of plain JSON data (iteratively, so a deep value cannot overflow
    the stack), counted up to ``limit + 1``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children
                         if isinstance(child, (dict, list)))
    return deepest


class Unreadable(ValueError):
    """A file whose text is not what it should be; ``reason`` says why, ``str`` names it."""

    def __init__(self, where: Path | str, reason: str) -> None:
        super().__init__(f"{where}: unreadable ({reason})")
        self.reason = reason


def reason_of(exc: BaseException) -> str:
    """The reason an ``Unreadable`` or ``OSError`` (``Refused`` included) gives, without the
    path, for a message that names the path itself."""
    return (getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc))


def parse_json(data: bytes | str, where: Path | str) -> Any:
    """JSON from its bytes; any failure (bad text, nesting beyond ``JSON_DEPTH``, Python's
    recursion limit) is ``Unreadable`` (a ``ValueError``) naming ``where``."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise Unreadable(where, "JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise Unreadable(where, str(exc)[:200]) from None
    if depth(value) > JSON_DEPTH:
        raise Unreadable(where, f"JSON nested more than {JSON_DEPTH} deep")
    return value


def read_json(path: Path | str, kind: str, root: Path | str | None = None) -> Any:
    """``parse_json`` of ``read_bytes``: ``FileNotFoundError`` when absent, ``Refused`` when
    refused, ``ValueError`` when the text is not JSON."""
    return parse_json(read_bytes(path, kind, root), path)


# -- names --------------------------------------------------------------------------------
def name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a schedule or run name, or None: the registry's rule (see
    ``schedules.registry.name_problem``) and a length in bytes a file system accepts."""
    from schedules.registry import name_problem as registry_rule

    if not isinstance(name, str):
        return "not a string"
    why = registry_rule(name)
    if why is None and len(name.encode("utf-8", "surrogatepass")) > NAME_BYTES:
        why = f"longer than {NAME_BYTES} bytes"
    return why


def check_name(name: Any, where: str, what: str = "schedule name") -> str:
    """``name`` if it is a valid name, else ``ValueError`` naming ``where``; the name is
    shown escaped and shortened, never as raw text."""
    why = name_problem(name)
    if why is not None:
        from bench.escape import terminal

        shown = terminal(name if isinstance(name, str) else repr(name)[:80], limit=60)
        raise ValueError(f"{where}: {what} '{shown}' is not a plain name ({why})")
    return name


# -- folders the suite writes into -----------------------------------------------------------
def folder_problem(path: Path | str, root: Path | str) -> str | None:
    """Why ``path`` (a folder below ``root``) is not a real folder reached without links, or
    None when it is one or does not exist yet."""
    try:
        os.close(_open_dir(Path(root), _parts(Path(path), Path(root))))
    except FileNotFoundError:
        return None
    except Refused as exc:
        return str(exc)
    except OSError as exc:
        return f"{path}: unusable ({exc.strerror or exc})"
    return None


def remove_entry(path: Path | str) -> None:
    """Remove what is at ``path`` itself: a link (never its target), a file, a FIFO or a
    folder with everything in it (``shutil.rmtree`` does not follow links inside)."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def clear_for_write(path: Path | str) -> bool:
    """Remove a folder, FIFO or device that stands where the suite writes a file it owns
    (a derived table, baselines); a link or a regular file is left to the atomic rename,
    which replaces the entry itself. Returns whether something was removed."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return False
    remove_entry(path)
    return True


def make_real_folder(path: Path | str, root: Path | str) -> list[str]:
    """Make ``path`` below ``root`` a real folder: every component that is a link or not a
    folder is removed (the entry itself, never what it points to) and created afresh.
    Returns a note per replaced component."""
    notes = []
    here = Path(root)
    for part in _parts(path, root):
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISDIR(mode):
            notes.append(f"{here}: {_kind_of(mode) if not stat.S_ISREG(mode) else 'a file'}"
                         ", where a folder is expected; replaced by an empty folder")
            remove_entry(here)
            mode = None
        if mode is None:
            with contextlib.suppress(FileExistsError):  # another process made it meanwhile
                here.mkdir()
    return notes

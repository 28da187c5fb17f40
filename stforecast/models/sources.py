"""Which files a user's model is made of, and where in them an error happened.

A model plugged in by file or module is often an adapter beside the authors' own files, which
it imports. Everything such an import loads from outside the standard library, the installed
packages and this suite is *the model's source*: its bytes decide the numbers, so each file
is hashed into the experiment's identity (``ModelEntry.sources_sha256``), and an edit to any
of them makes the runs stale. Installed packages the model's files import are recorded by
version instead (``package_versions``), leaving out the suite's own dependencies (torch,
numpy, ...), which every run's environment records already.

``located(exc)`` names the innermost frame of an exception's traceback that lies in such a
file (``adapter.py:12: return self.conv(x)``), so an error deep inside torch points at the
user's line that called it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import linecache
import os
import site
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

SUITE_DISTRIBUTION = "stbench"
_SUITE_PACKAGES = ("bench", "stforecast", "schedules")


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _real(path: str | Path) -> str:
    return os.path.realpath(os.fspath(path))


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    """Folders of the standard library and of installed packages."""
    roots: set[str] = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            roots.add(paths[key])
    if hasattr(site, "getsitepackages"):  # not in some embedded interpreters
        roots.update(site.getsitepackages())
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user_site:
        roots.add(user_site)
    roots.update(p for p in sys.path if "site-packages" in p or "dist-packages" in p)
    return tuple(sorted({_real(r) for r in roots if r}))


@functools.lru_cache(maxsize=1)
def _suite_roots() -> tuple[str, ...]:
    here = Path(__file__).resolve().parents[2]  # the folder holding the suite's packages
    return tuple(_real(here / name) for name in _SUITE_PACKAGES)


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def is_library_file(path: str | Path) -> bool:
    """Part of the standard library or of an installed package."""
    return _under(_real(path), _library_roots())


def is_suite_file(path: str | Path) -> bool:
    return _under(_real(path), _suite_roots())


def is_user_file(path: str | Path) -> bool:
    """A file of the user's own code: a real file outside the standard library, installed
    packages and the suite."""
    text = os.fspath(path)
    if not text or text.startswith("<") or not os.path.isfile(text):
        return False
    return not is_library_file(text) and not is_suite_file(text)


def module_file(module) -> str | None:
    """The source (or extension) file a module was loaded from, if it has one."""
    file = getattr(module, "__file__", None)
    return _real(file) if isinstance(file, str) and os.path.isfile(file) else None


def user_files(module_names) -> dict[str, str]:
    """``{module name: file}`` of those modules loaded from the user's own files."""
    out = {}
    for name in module_names:
        file = module_file(sys.modules.get(name))
        if file is not None and is_user_file(file):
            out[name] = file
    return out


def shown(path: str | Path, base: str | Path | None = None) -> str:
    """A file as reports show it: relative to ``base`` (the model's folder), else to the
    working folder when inside it, else its name alone (reports travel; no machine's
    folders in them)."""
    path = _real(path)
    if base is not None:
        return os.path.relpath(path, _real(base))
    rel = os.path.relpath(path, os.getcwd())
    return Path(path).name if rel.startswith("..") else rel


# -- where an error happened ------------------------------------------------------------------
def located(exc: BaseException) -> str:
    """`` at file.py:12: the line's text`` for the innermost frame of ``exc`` in the user's
    files (the suite's own files when the error is in a built-in model), or ``""``."""
    user = suite = None
    tb = exc.__traceback__
    while tb is not None:
        file = tb.tb_frame.f_code.co_filename
        if not file.startswith("<") and not is_library_file(file):
            if is_suite_file(file):
                suite = (file, tb.tb_lineno)
            else:
                user = (file, tb.tb_lineno)
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno \
            and is_user_file(exc.filename):
        user = (exc.filename, exc.lineno)  # the file that failed to parse has no frame
    frame = user or suite
    if frame is None:
        return ""
    file, line = frame
    text = " ".join(linecache.getline(file, line).split())
    if len(text) > 120:
        text = text[:117] + "..."
    return f" at {shown(file)}:{line}" + (f": {text}" if text else "")


def original(exc: BaseException) -> BaseException:
    """The exception a one-line error was made from (``ModelError.original``, or the cause
    it was raised from), for ``--traceback``."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "original", None) or exc.__cause__
        if inner is None:
            break
        exc = inner
    return exc


# -- installed packages the model's files import ----------------------------------------------
@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    try:
        return metadata.packages_distributions()
    except Exception:  # a broken installation's metadata: record nothing rather than fail
        return {}


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@functools.lru_cache(maxsize=1)
def _suite_dependencies() -> frozenset[str]:
    """The suite itself and what it requires: recorded with every run's environment."""
    names = {SUITE_DISTRIBUTION}
    try:
        for req in metadata.requires(SUITE_DISTRIBUTION) or []:
            if "extra ==" in req.replace("extra==", "extra =="):
                continue  # an optional extra (tests, Ray): not in every run's environment
            head = req.split(";")[0].strip()
            for stop in "<>=!~[ (":
                head = head.split(stop)[0]
            names.add(head)
    except metadata.PackageNotFoundError:
        names.update(("torch", "numpy", "pandas", "matplotlib", "pyyaml", "scipy"))
    return frozenset(_normal(n) for n in names)


def imported_names(path: str | Path) -> set[str]:
    """Top-level module names a Python file imports (absolute imports only)."""
    try:
        tree = ast.parse(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def package_versions(files, local_names=()) -> dict[str, str]:
    """``{distribution: version}`` of the installed packages ``files`` import, beyond the
    standard library, the user's own modules (``local_names``) and the suite's own
    dependencies."""
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    skip = _suite_dependencies()
    local = set(local_names)
    out = {}
    for file in files:
        if not str(file).endswith(".py"):
            continue
        for name in imported_names(file):
            if name in stdlib or name in local or name in _SUITE_PACKAGES:
                continue
            for dist in _distributions().get(name, []):
                if _normal(dist) in skip:
                    continue
                try:
                    out[dist] = metadata.version(dist)
                except metadata.PackageNotFoundError:
                    continue
    return dict(sorted(out.items()))

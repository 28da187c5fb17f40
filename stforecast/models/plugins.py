"""Models from outside the package: a file, a module, or an installed entry point.

``path/to/file.py:Class`` imports the file under a private module name (so two files called
``model.py`` never collide); ``package.module:Class`` imports an importable module; a bare
name that is not built in is looked up in the entry-point group ``stbench.models``, which an
installed package declares in its ``pyproject.toml``::

    [project.entry-points."stbench.models"]
    mynet = "mypkg.models:MyNet"

Every failure is a ``ModelError`` that names the model and what was expected against what
was found, so that ``bench run`` can stop before the grid with one line.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from importlib import metadata
from pathlib import Path

from torch import nn

from stforecast.models.registry import ModelEntry, ModelError

ENTRY_POINT_GROUP = "stbench.models"
_FILE_MODULES: dict[tuple[str, str], object] = {}


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def entry_points() -> dict[str, metadata.EntryPoint]:
    """Installed models, by entry-point name."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def is_reference(name: str) -> bool:
    """Whether a model name is an import reference (``a.py:Class`` / ``pkg.mod:Class``)."""
    return ":" in name


def resolve(name: str, builtins: list[str]) -> ModelEntry:
    if is_reference(name):
        where, _, attr = name.rpartition(":")
        if not where or not attr:
            raise ModelError(f"model '{name}': expected 'path/to/file.py:Class' or "
                             "'package.module:Class'")
        if where.endswith(".py") or "/" in where or "\\" in where:
            module, source = _import_file(name, Path(where))
            return _entry(name, module, attr, "file", f"{_shown_path(where)}:{attr}", source)
        module = _import_module(name, where)
        return _entry(name, module, attr, "module", f"{where}:{attr}", None)
    points = entry_points()
    if name in points:
        ep = points[name]
        where, _, attr = ep.value.partition(":")
        module = _import_module(name, where.strip())
        dist = getattr(ep.dist, "name", None)
        return _entry(name, module, attr.strip(), f"entry point of {dist or 'a package'}",
                      ep.value, None)
    known = sorted(builtins) + sorted(points)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise ModelError(f"unknown model '{name}'{hint}; known: {', '.join(known)}; or "
                     "path/to/file.py:Class, or package.module:Class")


def _shown_path(where: str) -> str:
    """The file as the user gave it, unless absolute: then only its name (reports travel)."""
    return Path(where).name if Path(where).is_absolute() else where


def _import_file(name: str, path: Path):
    if not path.is_file():
        raise ModelError(f"model '{name}': file not found: {path}")
    resolved = path.resolve()
    digest = file_sha256(resolved)
    key = (str(resolved), digest)
    if key not in _FILE_MODULES:
        mod_name = f"_stbench_models.{resolved.stem}_{digest[:12]}"
        spec = importlib.util.spec_from_file_location(mod_name, resolved)
        if spec is None or spec.loader is None:
            raise ModelError(f"model '{name}': {path} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module  # dataclasses and pickling look the module up here
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise ModelError(f"model '{name}': importing {path} failed: "
                             f"{_one_line(exc)}") from None
        _FILE_MODULES[key] = module
    return _FILE_MODULES[key], str(resolved)


def _import_module(name: str, module_name: str):
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise ModelError(f"model '{name}': importing module '{module_name}' failed: "
                         f"{_one_line(exc)}") from None


def _entry(name: str, module, attr: str, origin: str, import_path: str,
           source: str | None) -> ModelEntry:
    cls = getattr(module, attr, None)
    if cls is None:
        classes = sorted(k for k, v in vars(module).items()
                         if isinstance(v, type) and issubclass(v, nn.Module)
                         and v.__module__ == module.__name__)
        raise ModelError(f"model '{name}': no class '{attr}' there; nn.Module classes found: "
                         f"{', '.join(classes) or 'none'}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelError(f"model '{name}': expected an nn.Module subclass, found "
                         f"{type(cls).__name__} '{attr}'")
    if source is None:
        try:
            source = inspect.getsourcefile(cls)
        except TypeError:
            source = None
    doc = (inspect.getdoc(cls) or "").strip().splitlines()
    summary = doc[0] if doc else f"{origin}: {import_path}"
    return ModelEntry(name, cls, summary, origin, import_path, source)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    where = ""
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame of real code: the line that failed
        file = tb.tb_frame.f_code.co_filename
        if not file.startswith("<"):
            where = f" (line {tb.tb_lineno} of {Path(file).name})"
        tb = tb.tb_next
    return f"{type(exc).__name__}: {text}{where}"

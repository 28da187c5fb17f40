"""Models from outside the package: a file, a module, or an installed entry point.

``path/to/file.py:Class`` imports the file under a private module name (so two files called
``model.py`` never collide), with the file's folder importable while it is imported, as
``python file.py`` would have it: an adapter can ``import`` the authors' file beside it.
``package.module:Class`` imports an importable module; a bare name that is not built in is
looked up in the entry-point group ``stbench.models``, which an installed package declares
in its ``pyproject.toml``::

    [project.entry-points."stbench.models"]
    mynet = "mypkg.models:MyNet"

Every file such an import loads from outside the standard library, the installed packages
and the suite is remembered with the model (``ModelEntry.loaded``), so that its hash joins
the model's identity; when one of them changes on disk, the next resolve imports the model
afresh. Every failure is a ``ModelError`` that names the model and what was expected against
what was found (for an exception, the user's line it happened at), so that ``bench run`` can
stop before the grid with one line.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from torch import nn

from stforecast.models.registry import ModelEntry, ModelError
from stforecast.models.sources import file_sha256, located, module_file, user_files

__all__ = ["ENTRY_POINT_GROUP", "entry_points", "file_sha256", "is_reference", "resolve"]

ENTRY_POINT_GROUP = "stbench.models"


@dataclass
class _Import:
    """A module imported for a model, with the user's files that import loaded."""

    module: object
    files: dict[str, str]      # file -> sha256 when imported (the module's own included)
    modules: list[str]         # the names under which those files sit in sys.modules

    def changed(self) -> bool:
        for file, digest in self.files.items():
            try:
                if file_sha256(file) != digest:
                    return True
            except OSError:
                return True
        return False

    def forget(self) -> None:
        """Drop the user's modules of this import from ``sys.modules``, so that the next
        import reads their files again (the model's own private module stays: dataclasses
        and type hints look it up by name)."""
        for name in self.modules:
            if not name.startswith(_PRIVATE + "."):
                sys.modules.pop(name, None)


_PRIVATE = "_stbench_models"
_FILE_IMPORTS: dict[str, _Import] = {}
_MODULE_IMPORTS: dict[str, _Import] = {}


def _forget_earlier_imports() -> None:
    """Before a model file is imported: the user's modules an earlier model's import loaded
    leave ``sys.modules``, so that ``import upstream`` finds the ``upstream.py`` beside this
    file, as in a fresh ``python file.py``, not another folder's (in one process, several
    models; the earlier models keep the modules they hold)."""
    for done in [*_FILE_IMPORTS.values(), *_MODULE_IMPORTS.values()]:
        done.forget()


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
            path = Path(where)
            done = _import_file(name, path)
            source = str(path.resolve())
            return _entry(name, done, attr, "file", f"{_shown_path(where)}:{attr}", source,
                          root=str(path.resolve().parent))
        done = _import_module(name, where)
        return _entry(name, done, attr, "module", f"{where}:{attr}", None,
                      root=_package_root(done.module))
    points = entry_points()
    if name in points:
        ep = points[name]
        where, _, attr = ep.value.partition(":")
        done = _import_module(name, where.strip())
        dist = getattr(ep.dist, "name", None)
        version = getattr(ep.dist, "version", None)
        entry = _entry(name, done, attr.strip(), f"entry point of {dist or 'a package'}",
                       ep.value, None, root=_package_root(done.module))
        if dist and version:
            entry = replace(entry, packages=((dist, version),))
        return entry
    known = sorted(builtins) + sorted(points)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise ModelError(f"unknown model '{name}'{hint}; known: {', '.join(known)}; or "
                     "path/to/file.py:Class, or package.module:Class")


def _shown_path(where: str) -> str:
    """The file as the user gave it, unless absolute: then only its name (reports travel)."""
    return Path(where).name if Path(where).is_absolute() else where


def _package_root(module) -> str | None:
    """The folder that holds a module's top-level package (what ``sys.path`` named)."""
    file = module_file(module)
    if file is None:
        return None
    depth = module.__name__.count(".") + (1 if Path(file).stem == "__init__" else 0)
    return str(Path(file).parents[depth])


def _loaded_by(before: set[str], extra: list[str]) -> tuple[dict[str, str], list[str]]:
    """The user's files among the modules that appeared since ``before`` (and ``extra``)."""
    names = [n for n in sys.modules if n not in before] + extra
    found = user_files(dict.fromkeys(names))
    files = {}
    for file in dict.fromkeys(found.values()):
        try:
            files[file] = file_sha256(file)
        except OSError:
            continue
    return files, list(found)


def _import_file(name: str, path: Path) -> _Import:
    if not path.is_file():
        raise ModelError(f"model '{name}': file not found: {path}")
    resolved = path.resolve()
    key = str(resolved)
    done = _FILE_IMPORTS.get(key)
    if done is not None and not done.changed():
        return done
    _forget_earlier_imports()
    digest = file_sha256(resolved)
    mod_name = f"{_PRIVATE}.{resolved.stem}_{digest[:12]}"
    spec = importlib.util.spec_from_file_location(mod_name, resolved)
    if spec is None or spec.loader is None:
        raise ModelError(f"model '{name}': {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    before = set(sys.modules)
    sys.modules[mod_name] = module  # dataclasses and pickling look the module up here
    folder = str(resolved.parent)
    sys.path.insert(0, folder)  # as `python file.py` would: its siblings are importable
    importlib.invalidate_caches()
    writes = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # the hash of the source decides, never a stale .pyc
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        for added in set(sys.modules) - before:
            sys.modules.pop(added, None)
        if not isinstance(exc, Exception):
            raise
        raise ModelError(f"model '{name}': importing {path} failed: {_one_line(exc)}"
                         f"{_module_hint(exc, resolved)}", original=exc) from None
    finally:
        sys.dont_write_bytecode = writes
        with contextlib.suppress(ValueError):  # someone else removed it already
            sys.path.remove(folder)
    files, modules = _loaded_by(before, [mod_name])
    files.setdefault(key, digest)
    done = _FILE_IMPORTS[key] = _Import(module, files, modules)
    return done


def _module_hint(exc: BaseException, model_file: Path) -> str:
    """For a module that is not found: where the suite looked for it."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return ""
    return (f"; '{exc.name.split('.')[0]}' is neither installed nor a file or folder beside "
            f"{model_file.name}")


def _import_module(name: str, module_name: str) -> _Import:
    done = _MODULE_IMPORTS.get(module_name)
    if done is not None and not done.changed():
        return done
    if done is not None:
        done.forget()
    before = set(sys.modules)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelError(f"model '{name}': importing module '{module_name}' failed: "
                         f"{_one_line(exc)}", original=exc) from None
    top = module_name.split(".")[0]
    package = [n for n in sys.modules if n == top or n.startswith(top + ".")]
    files, modules = _loaded_by(before, [module_name, *package])
    done = _MODULE_IMPORTS[module_name] = _Import(module, files, modules)
    return done


def _entry(name: str, done: _Import, attr: str, origin: str, import_path: str,
           source: str | None, root: str | None) -> ModelEntry:
    module = done.module
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
    own = str(Path(source).resolve()) if source else None
    loaded = tuple(sorted(f for f in done.files if f != own))
    doc = (inspect.getdoc(cls) or "").strip().splitlines()
    summary = doc[0] if doc else f"{origin}: {import_path}"
    return ModelEntry(name, cls, summary, origin, import_path, source, loaded=loaded,
                      root=root, local_modules=tuple(sorted({n.split(".")[0]
                                                             for n in done.modules})))


def _one_line(exc: BaseException) -> str:
    """``Type: message at file.py:12: the line`` (the user's line, see ``located``)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}{located(exc)}"

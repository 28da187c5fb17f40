"""Frozen config dataclasses built from YAML and validated before anything is built.

``from_dict(cls, data, where)`` walks a dataclass's fields and accepts exactly those keys, with
values of the declared types. An unknown key, a wrong type or a bad value raises
``ConfigError`` naming the file and the dotted key, with close matches suggested for typos.
Numbers written as strings (YAML 1.1 reads ``1e-3`` as a string) are accepted for float fields.

YAML is read strictly (``read_yaml``): a key given twice in one mapping is an error naming the
key and both lines (YAML's own rule; PyYAML would keep the last silently), aliases may
expand to at most ``MAX_YAML_VALUES`` values (a few hundred bytes of nested aliases would
otherwise expand to billions), and an error message shows a value only shortened
(``short``), never the whole ``repr`` of what may be a huge structure.
"""

from __future__ import annotations

import dataclasses
import difflib
import reprlib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """Bad usage, config or data: reported as one line, exit code 2."""


def suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


MAX_YAML_VALUES = 100_000  # scalars, lists and mappings after expanding aliases
MAX_YAML_DEPTH = 64


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` bounded in work and length (``reprlib``; control characters escaped):
    what an error message shows of a value, however large the value is."""
    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlevel, r.maxlist, r.maxdict, r.maxtuple, r.maxset = 3, 6, 6, 6, 6
    text = r.repr(value)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                       for c in text)
    return text if len(text) <= 2 * limit else text[:2 * limit] + "..."


class _Duplicate(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(f"duplicate key {short(key)} at line {first} and line {second}")


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (merge keys ``<<``
    may still be overridden, as YAML allows)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _Duplicate(key, seen[key], line)
                    seen[key] = line
                except TypeError:
                    continue  # an unhashable key: PyYAML's own error follows
        return super().construct_mapping(node, deep)


def _expanded_size(root: yaml.Node) -> int:
    """The values a node stands for once its aliases are expanded (shared nodes counted
    every time they are used), computed once per node; over ``MAX_YAML_VALUES``, nested over
    ``MAX_YAML_DEPTH`` or recursive is a ``ValueError``."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    active: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        if id(node) in sizes:
            continue
        if depth > MAX_YAML_DEPTH:
            raise ValueError(f"nested more than {MAX_YAML_DEPTH} deep")
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = ([c for pair in node.value for c in pair]
                    if isinstance(node, yaml.MappingNode) else list(node.value))
        if done:
            active.discard(id(node))
            total = 1 + sum(sizes[id(c)] for c in children)
            if total > MAX_YAML_VALUES:
                raise ValueError(f"more than {MAX_YAML_VALUES:,} values once its aliases "
                                 "are expanded")
            sizes[id(node)] = total
            continue
        if id(node) in active:
            raise ValueError("an alias refers to a value that holds it (recursive)")
        active.add(id(node))
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; any failure is a ``ConfigError`` naming the file and line.

    The file must be a regular file within the size cap (``bench.safe_files``); keys given
    twice and aliases that expand beyond ``MAX_YAML_VALUES`` values are errors."""
    from bench.safe_files import read_text

    path = Path(path)
    try:
        text = read_text(path, "yaml", follow=True)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"{path}: cannot read ({why})") from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _Duplicate as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{at}: {short(problem, 200)[1:-1]}") \
            from None
    except ValueError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: malformed YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0]).split(' ', 1)[1]}s"
    if origin in (dict, Mapping) or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _label(where: str, path: str) -> str:
    return f"{where}: {path}" if where and path else (where or path)


def convert(tp: Any, value: Any, where: str, path: str = "") -> Any:
    """``value`` as type ``tp`` or ``ConfigError``.

    ``where`` names the file (or flag) and ``path`` the dotted key inside it; messages read
    ``file.yaml: train.batch_size: expected an integer, got 'big'``.
    """
    key = _label(where, path)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return convert(a, value, where, path)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, path)
    if tp is Any:
        return value
    bad = ConfigError(f"{key}: expected {_type_name(tp)}, got {short(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if not isinstance(value, (int, float)):
            raise bad
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: expected a finite number, got {value}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        if not isinstance(value, (list, tuple)):
            raise bad
        return tuple(convert(item, v, where, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise bad
        if any(not isinstance(k, str) for k in value):
            raise ConfigError(f"{key}: keys must be strings")
        return dict(value)
    raise TypeError(f"unsupported config type {tp} at {key}")


def from_dict(cls: type, data: Any, where: str = "", path: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types.

    ``where`` names the source (a file) and ``path`` the dotted key of ``data`` inside it. A
    ``ValueError`` or ``TypeError`` from the dataclass's own ``__post_init__`` checks is
    re-raised as ``ConfigError`` with the location prefixed.
    """
    here = _label(where, path) or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{here}: expected a mapping, got {short(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    prefix = f"{path}." if path else ""
    for key in data:
        if key not in fields:
            shown = short(key)[1:-1] if isinstance(key, str) else short(key)
            raise ConfigError(f"{_label(where, f'{prefix}{shown}')}: unknown key"
                              f"{suggest(str(key)[:100], list(fields))}; allowed: "
                              f"{', '.join(fields)}")
    kwargs = {k: convert(hints[k], v, where, f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{here}: {exc}") from None


def to_dict(obj: Any) -> Any:
    """Plain JSON/YAML-ready form of a (nested) config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj

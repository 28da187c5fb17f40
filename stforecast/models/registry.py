"""The model contract, and how a model name becomes a model.

**The contract.** A forecasting model is an ``nn.Module`` class whose constructor takes the
dataset's ``DataSpec`` as the keyword argument ``spec`` plus the model's own options, and
whose ``forward(x)`` maps

- ``x``: ``[B, T_in, N, F]`` float32, the channels named by ``spec.input_features`` in that
  order: ``value`` (the target z-scored with training statistics; 0 where a reading is
  missing), ``time_of_day`` (fraction of the day in [0, 1)) and ``day_of_week`` (0 = Monday
  .. 6, stored as float);

to ``[B, T_out, N, 1]`` in the same scaled space as ``value``; the engine maps predictions
back to original units before the masked loss and metrics. ``spec`` also carries the steps
per day and the sensor graph (``adjacency``, ``[N, N]`` or None).

Options reach the constructor in one of two ways, decided by its signature:

- a parameter ``config`` annotated with a dataclass (the built-ins: ``STIDConfig``): the
  options fill that dataclass, and the model is built as ``Model(config=..., spec=...)``;
- otherwise the options are keyword arguments: ``Model(spec=spec, **options)``.

Either way the accepted option names and types are read from that dataclass or signature,
so a typo is refused, never silently dropped.

**Names.** ``resolve_model`` accepts a built-in name (``stid``, ``gwnet``, ``stgcn``), the
name of an entry point in the group ``stbench.models`` of an installed package, a file
``path/to/file.py:Class`` or a module ``package.module:Class``. The built-ins go through
exactly the same ``ModelEntry.build`` as a user's model.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

INPUT_FEATURES = ("value", "time_of_day", "day_of_week")


class ModelError(ValueError):
    """A model cannot be found, imported, configured or run; the message names the model."""


@dataclass(frozen=True, eq=False)
class DataSpec:
    """The facts about a dataset a model is built for."""

    num_nodes: int
    input_len: int = 12
    output_len: int = 12
    steps_per_day: int = 288
    adjacency: np.ndarray | None = None  # [N, N]; graph models require it
    input_features: tuple[str, ...] = INPUT_FEATURES

    @property
    def num_features(self) -> int:
        return len(self.input_features)


@dataclass(frozen=True)
class ModelOption:
    """One option a model accepts: its name, declared type (``Any`` if unannotated) and
    default (``inspect.Parameter.empty`` when it must be given)."""

    name: str
    type: Any
    default: Any


@dataclass(frozen=True)
class ModelEntry:
    """A model class and where it came from.

    ``name`` is what the user wrote (``stid``, ``examples/net.py:Net``); ``import_path`` is
    ``module:Class`` or ``file.py:Class`` as shown in reports; ``source`` is the file whose
    bytes ``source_sha256`` hashes, so that editing the model makes earlier runs stale.
    """

    name: str
    cls: type
    summary: str
    origin: str                       # built-in | entry point | module | file
    import_path: str
    source: str | None = None         # the defining file, when there is one

    @property
    def config_cls(self) -> type | None:
        """The dataclass the options fill, or None when options are constructor keywords."""
        hints = _init_hints(self.cls)
        params = inspect.signature(self.cls.__init__).parameters
        tp = hints.get("config")
        if "config" in params and isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return tp
        return None

    def options(self) -> tuple[list[ModelOption], bool]:
        """The options the model accepts, and whether it also takes any other keyword
        (a ``**kwargs`` constructor, whose options cannot be checked here)."""
        config = self.config_cls
        if config is not None:
            hints = typing.get_type_hints(config)
            out = []
            for f in dataclasses.fields(config):
                if not f.init:
                    continue
                default = (f.default if f.default is not dataclasses.MISSING else
                           f.default_factory() if f.default_factory is not dataclasses.MISSING
                           else inspect.Parameter.empty)
                out.append(ModelOption(f.name, hints.get(f.name, Any), default))
            return out, False
        hints = _init_hints(self.cls)
        out, any_keyword = [], False
        for i, p in enumerate(inspect.signature(self.cls.__init__).parameters.values()):
            if i == 0 or p.name == "spec":
                continue  # self, and the data spec the suite passes itself
            if p.kind is p.VAR_KEYWORD:
                any_keyword = True
            elif p.kind is p.VAR_POSITIONAL:
                continue
            else:
                out.append(ModelOption(p.name, hints.get(p.name, Any), p.default))
        return out, any_keyword

    def check_signature(self) -> None:
        """The constructor must take ``spec`` by keyword."""
        params = inspect.signature(self.cls.__init__).parameters
        spec = params.get("spec")
        if spec is None or spec.kind is spec.POSITIONAL_ONLY:
            shown = ", ".join(list(params)[1:]) or "nothing"
            raise ModelError(f"model '{self.name}': the constructor must take the data spec as "
                             f"a parameter named 'spec'; found ({shown})")

    def check_options(self, options: dict[str, Any]) -> None:
        """Refuse an unknown option or a missing required one, naming the accepted ones."""
        accepted, any_keyword = self.options()
        names = [o.name for o in accepted]
        listed = ", ".join(names) or "none"
        for key in options:
            if key not in names and not any_keyword:
                close = difflib.get_close_matches(str(key), names, n=3, cutoff=0.5)
                hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
                raise ModelError(f"model '{self.name}': unknown option '{key}'{hint}; "
                                 f"accepted: {listed}")
        for o in accepted:
            if o.default is inspect.Parameter.empty and o.name not in options:
                raise ModelError(f"model '{self.name}': option '{o.name}' is required; "
                                 f"accepted: {listed}")

    def build(self, spec: DataSpec, options: dict[str, Any] | None = None) -> nn.Module:
        """Instantiate the model for a dataset; options are checked by name first."""
        options = dict(options or {})
        self.check_options(options)
        config = self.config_cls
        if config is not None:
            return self.cls(config=config(**options), spec=spec)
        return self.cls(spec=spec, **options)

    def source_sha256(self) -> str | None:
        """Hash of the file that defines the model, or None when it has no file."""
        from stforecast.models.plugins import file_sha256

        return file_sha256(self.source) if self.source else None


def _init_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that does not resolve: treat as unannotated
        return {}


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, summary: str) -> Callable[[type], type]:
    """Class decorator adding a built-in model; a second use of a name raises."""

    def wrap(cls: type) -> type:
        if name in _MODELS:
            raise ValueError(f"model '{name}' is already registered")
        _MODELS[name] = ModelEntry(name, cls, summary, "built-in",
                                   f"{cls.__module__}:{cls.__qualname__}",
                                   inspect.getsourcefile(cls))
        return cls

    return wrap


def model_names() -> list[str]:
    """The built-in models."""
    return sorted(_MODELS)


def get_model(name: str) -> ModelEntry:
    """A built-in model by name."""
    if name not in _MODELS:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(model_names())}")
    return _MODELS[name]


def resolve_model(name: str) -> ModelEntry:
    """A built-in name, an entry point's name, ``file.py:Class`` or ``module:Class``.

    Raises ``ModelError`` naming the model and what went wrong (file not found, import
    failed, no such class, not an ``nn.Module``, no ``spec`` parameter).
    """
    from stforecast.models import plugins

    if name in _MODELS:
        return _MODELS[name]
    entry = plugins.resolve(name, model_names())
    entry.check_signature()
    return entry


def build_model(name: str, spec: DataSpec, options: dict[str, Any] | None = None) -> nn.Module:
    """Resolve a model name and build it for a dataset (see ``resolve_model``)."""
    return resolve_model(name).build(spec, options)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def require_adjacency(spec: DataSpec, model: str) -> np.ndarray:
    """``spec.adjacency`` as float32 ``[N, N]``; graph models cannot be built without it."""
    adj = spec.adjacency
    if adj is None:
        raise ValueError(f"model '{model}' needs a graph, but the dataset spec has no adjacency")
    adj = np.asarray(adj, dtype=np.float32)
    if adj.shape != (spec.num_nodes, spec.num_nodes):
        raise ValueError(f"adjacency has shape {adj.shape}, expected "
                         f"({spec.num_nodes}, {spec.num_nodes})")
    return adj


def check_input(x, spec: DataSpec) -> None:
    """The one assertion of the layout at the model boundary."""
    if x.dim() != 4 or x.shape[1] != spec.input_len or x.shape[2] != spec.num_nodes \
            or x.shape[3] != spec.num_features:
        raise ValueError(f"expected input [B, {spec.input_len}, {spec.num_nodes}, "
                         f"{spec.num_features}], got {list(x.shape)}")

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
per day and the sensor graph (``adjacency``: ``[N, N]`` as loaded, ``W[i, j]`` the link
from ``i`` to ``j``, or None; ``DataSpec.adjacency_as`` gives the normalised forms).

The model is built on the CPU and moved with ``.to(device)``; tensors it keeps must be
parameters or buffers, which ``.to`` moves (the dry step warns about any that is not).

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
    """A model cannot be found, imported, configured or run; the message names the model.

    ``original`` is the exception the message was made from, if any (``--traceback`` prints
    its whole trace)."""

    def __init__(self, message: str, original: BaseException | None = None) -> None:
        super().__init__(message)
        self.original = original


ADJACENCY_FORMS = ("raw", "symmetric", "random_walk", "reverse_random_walk",
                   "scaled_laplacian")


@dataclass(frozen=True, eq=False)
class DataSpec:
    """The facts about a dataset a model is built for.

    - ``num_nodes`` (N), ``input_len`` (T_in), ``output_len`` (T_out): the model maps
      ``[B, T_in, N, F]`` to ``[B, T_out, N, 1]``.
    - ``steps_per_day``: 288 at 5-minute data, 24 at hourly data.
    - ``input_features``: the F input channels, in order (``value``, ``time_of_day``,
      ``day_of_week``); ``num_features`` is their count.
    - ``adjacency``: the sensor graph **as the dataset's files give it**, a float32 numpy
      array ``[N, N]``, never normalised. ``adjacency[i, j]`` is the weight of the link from
      node ``i`` to node ``j`` (DCRNN's convention): finite and non-negative, 0 where there
      is no link, and in general **not symmetric** (directed road distances). Self-loops are
      whatever the data hold: the Gaussian-kernel graphs of DCRNN's ``adj_mx.pkl``, of
      ``synthetic-la`` and of los-loop, and graphs made from an edge list, have 1 on the
      diagonal; SZ-taxi's 0/1 road links have 0. ``None`` only for a dataset without a
      graph (the suite's loaders refuse a missing graph file, so every built-in dataset has
      one); a graph model should refuse it (``require_adjacency``).

    Published models expect one of a few normalised forms; ``adjacency_as`` returns each,
    computed from the graph above, so that an adapter need not re-derive them.

    The model is **built on the CPU and then moved** with ``.to(device)``: keep every tensor
    it derives from the spec (a support, a Laplacian) in a parameter or a buffer
    (``register_buffer``), never in a plain attribute or list, which ``.to`` does not move.
    """

    num_nodes: int
    input_len: int = 12
    output_len: int = 12
    steps_per_day: int = 288
    adjacency: np.ndarray | None = None  # [N, N] as loaded (see above); graph models need it
    input_features: tuple[str, ...] = INPUT_FEATURES

    @property
    def num_features(self) -> int:
        return len(self.input_features)

    def adjacency_as(self, form: str = "raw", self_loops: bool | None = None) -> np.ndarray:
        """The graph in the form a published model expects, float32 ``[N, N]``.

        ``self_loops``: ``None`` keeps the diagonal as loaded, ``True`` sets it to 1 first
        (a self-loop on every node, as GCN's ``A + I`` on a graph without any), ``False``
        sets it to 0. Forms:

        - ``raw``: as loaded (``W``);
        - ``symmetric``: ``D^-1/2 W D^-1/2``, ``D`` the row sums (GCN; with
          ``self_loops=True`` Kipf & Welling's renormalised ``A + I``);
        - ``random_walk``: ``D^-1 W``, each row summing to 1 (DCRNN's and Graph WaveNet's
          forward transition);
        - ``reverse_random_walk``: ``D^-1 W^T`` (their backward transition; Graph WaveNet's
          ``doubletransition`` is ``[random_walk, reverse_random_walk]``);
        - ``scaled_laplacian``: ``2 L / lambda_max - I`` of the symmetrised normalised
          Laplacian without self-loops (ChebNet, STGCN, ASTGCN); ``self_loops`` is ignored.

        Raises ``ValueError`` when the dataset has no graph or the form is unknown.
        """
        from stforecast import graph

        if form not in ADJACENCY_FORMS:
            raise ValueError(f"unknown adjacency form {form!r}; known: "
                             f"{', '.join(ADJACENCY_FORMS)}")
        if self.adjacency is None:
            raise ValueError("the dataset has no graph (spec.adjacency is None)")
        adj = np.asarray(self.adjacency, dtype=np.float32)
        if form == "scaled_laplacian":
            return graph.scaled_laplacian(adj)
        if self_loops is not None:
            adj = graph.with_self_loops(adj, 1.0 if self_loops else 0.0)
        if form == "raw":
            return np.array(adj, dtype=np.float32, copy=True)
        if form == "symmetric":
            return graph.symmetric_normalized(adj)
        if form == "random_walk":
            return graph.random_walk(adj)
        return graph.random_walk(adj.T)


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
    bytes ``source_sha256`` hashes, and ``loaded`` the other files of the user's that its
    import loaded (an adapter's upstream file, a package's modules), hashed by
    ``sources_sha256``: editing any of them makes earlier runs stale.
    """

    name: str
    cls: type
    summary: str
    origin: str                       # built-in | entry point | module | file
    import_path: str
    source: str | None = None         # the defining file, when there is one
    loaded: tuple[str, ...] = ()      # the user's other files its import loaded
    root: str | None = None           # the folder those files are named relative to
    local_modules: tuple[str, ...] = ()   # top-level names of the user's own modules
    packages: tuple[tuple[str, str], ...] = ()  # (distribution, version) it comes from

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
        from stforecast.models.sources import file_sha256

        return file_sha256(self.source) if self.source else None

    def sources_sha256(self) -> dict[str, str]:
        """``{file: sha256}`` of the other files the model's import loaded, each named
        relative to the model's folder (or its package's), read from disk now."""
        from stforecast.models.sources import file_sha256, shown

        out = {}
        for file in self.loaded:
            try:
                out[shown(file, self.root)] = file_sha256(file)
            except OSError:
                out[shown(file, self.root)] = "missing"
        return dict(sorted(out.items()))

    def package_versions(self) -> dict[str, str]:
        """``{distribution: version}`` of the installed packages the model's files import
        (or that provide an entry point), beyond the suite's own dependencies."""
        from stforecast.models.sources import package_versions

        files = ([self.source] if self.source and self.origin != "built-in" else [])
        out = package_versions([*files, *self.loaded], self.local_modules)
        out.update(dict(self.packages))
        return dict(sorted(out.items()))


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

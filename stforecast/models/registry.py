"""Models by name: each is a frozen ``<Name>Config`` plus an ``nn.Module(config, spec)``.

Every model maps ``x [B, L_in, N, 3]`` (see ``stforecast.windows``) to ``[B, L_out, N, 1]`` in
the scaled space. What a model needs to know about the data (node count, window lengths,
steps per day, the graph) arrives in one ``DataSpec`` so that hyperparameters and data never
mix in the config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn


@dataclass(frozen=True, eq=False)
class DataSpec:
    """The facts about a dataset a model is built for."""

    num_nodes: int
    input_len: int = 12
    output_len: int = 12
    steps_per_day: int = 288
    adjacency: np.ndarray | None = None  # [N, N]; graph models require it


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config_cls: type
    build: Callable[..., nn.Module]
    summary: str


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, config_cls: type, summary: str):
    """Class decorator adding a model to the registry; a second use of a name raises."""

    def wrap(cls):
        if name in _MODELS:
            raise ValueError(f"model '{name}' is already registered")
        _MODELS[name] = ModelEntry(name, config_cls, cls, summary)
        return cls

    return wrap


def model_names() -> list[str]:
    return sorted(_MODELS)


def get_model(name: str) -> ModelEntry:
    if name not in _MODELS:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(model_names())}")
    return _MODELS[name]


def make_config(name: str, overrides: dict | None = None):
    """The model's config with ``overrides`` applied; an unknown key raises ``KeyError``."""
    entry = get_model(name)
    fields = {f.name for f in dataclasses.fields(entry.config_cls)}
    unknown = sorted(set(overrides or {}) - fields)
    if unknown:
        raise KeyError(f"model '{name}' has no option {', '.join(map(repr, unknown))}; "
                       f"options: {', '.join(sorted(fields))}")
    return entry.config_cls(**(overrides or {}))


def build_model(name: str, spec: DataSpec, overrides: dict | None = None) -> nn.Module:
    """Instantiate a registered model for a dataset."""
    return get_model(name).build(make_config(name, overrides), spec)


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
    if x.dim() != 4 or x.shape[1] != spec.input_len or x.shape[2] != spec.num_nodes:
        raise ValueError(
            f"expected input [B, {spec.input_len}, {spec.num_nodes}, C], got {tuple(x.shape)}"
        )

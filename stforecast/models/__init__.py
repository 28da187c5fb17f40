"""Forecasting models, registered by name (``stid``, ``gwnet``, ``stgcn``)."""

from stforecast.models import gwnet, stgcn, stid  # noqa: F401  (registers)
from stforecast.models.registry import (
    DataSpec,
    build_model,
    count_parameters,
    get_model,
    make_config,
    model_names,
)

__all__ = ["DataSpec", "build_model", "count_parameters", "get_model", "make_config",
           "model_names"]

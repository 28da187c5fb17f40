"""Forecasting models: built-ins registered by name (``stid``, ``gwnet``, ``stgcn``) and
users' models plugged in by file, module or entry point; the contract is in ``registry``."""

from stforecast.models import gwnet, stgcn, stid  # noqa: F401  (registers)
from stforecast.models.registry import (
    INPUT_FEATURES,
    DataSpec,
    ModelEntry,
    ModelError,
    build_model,
    count_parameters,
    get_model,
    model_names,
    resolve_model,
)

__all__ = ["INPUT_FEATURES", "DataSpec", "ModelEntry", "ModelError", "build_model",
           "count_parameters", "get_model", "model_names", "resolve_model"]

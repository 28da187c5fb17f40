"""The fixed forecasting workload: datasets, windows, models, masked metrics, one engine."""

__version__ = "0.1.0"

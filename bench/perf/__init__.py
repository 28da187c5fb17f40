"""Performance, measured: ``command`` (``python -m bench perf``), ``grid`` (the suite against
the naive reference, whole grids in fresh processes), ``levers`` (per-step and per-epoch
timings) and ``naive`` (the reference itself)."""

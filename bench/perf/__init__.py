"""Performance, measured: ``command`` (``python -m bench perf``), ``grid`` (the suite against
the naive reference, whole grids in fresh processes), ``levers`` (per-step and per-epoch
timings), ``limits`` (a step's FLOPs and time against the machine's measured matmul rate at
its dominant shape) and ``naive`` (the reference itself)."""

"""The runner: CLI, grid of runs, results store, report and regression check."""

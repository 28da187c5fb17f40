"""Shared fixtures: the real data folder beside the project, small datasets, CPU defaults."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("STBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real files for loader tests); skipped where it is not present."""
    if not (SHARED_DATA / "los-loop" / "los_speed.csv").is_file():
        pytest.skip(f"real data folder not found at {SHARED_DATA} (set STBENCH_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _cpu_threads():
    # Same thread count in every test keeps float reductions in the same order.
    torch.set_num_threads(1)
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)

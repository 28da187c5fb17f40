"""The verdict rules as statistical procedures: their error rates and power measured by a
seeded simulation at the noise the committed reports show (``bench.report.simulation``;
docs/statistics.md quotes the same measurement at more repetitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.report.simulation import (
    SPREADS,
    best_set_rates,
    format_rates,
    recommendation_rates,
    table_rates,
)

REPS = 2000          # tables per cell
STUDIES = 300        # cross-dataset studies per cell (each runs several permutation tests)


def allowance(rate: float, reps: int) -> float:
    """Three Monte Carlo standard errors at ``rate``: a procedure whose true rate is the
    bound still passes."""
    return 3 * math.sqrt(rate * (1 - rate) / reps)


@pytest.fixture(scope="module")
def rates():
    rng = np.random.default_rng(20240519)
    return {n: {"table": table_rates(n, SPREADS["synthetic-la"], REPS, rng),
               "heavy": table_rates(n, SPREADS["synthetic-la"], REPS, rng, heavy=True,
                                    only=("null",)),
               "taxi": table_rates(n, SPREADS["sz-taxi"], REPS, rng, only=("null", "power")),
               "best": best_set_rates(n, SPREADS["synthetic-la"], REPS, rng),
               "across": recommendation_rates(n, STUDIES, rng)}
           for n in (3, 6, 10)}


@pytest.mark.parametrize("n", [3, 6, 10])
def test_equal_schedules_are_rarely_called_better_or_worse(rates, n):
    """Family-wise false better/worse at most 6 % in a table of 5 comparisons, with normal
    and with heavy-tailed noise."""
    for key in ("table", "heavy", "taxi"):
        assert rates[n][key]["false_decision"] <= 0.06 + allowance(0.06, REPS), key


@pytest.mark.parametrize("n", [3, 6, 10])
def test_equivalence_is_rarely_given_at_the_margin(rates, n):
    assert rates[n]["table"]["false_equivalent"] <= 0.05 + allowance(0.05, REPS)


def test_power_for_two_percent_at_six_seeds(rates):
    """A 2 % difference at 0.9 % spread, 6 seeds, 5 comparisons: found at least 70 % of the
    time; and equal schedules read "equivalent within ±2 %" in most 6-seed tables."""
    assert rates[6]["table"]["power"] >= 0.70
    assert rates[6]["table"]["equivalent"] >= 0.90
    assert rates[10]["table"]["power"] > rates[6]["table"]["power"] > rates[3]["table"]["power"]


@pytest.mark.parametrize("n", [3, 6, 10])
def test_the_best_set_keeps_the_best(rates, n):
    best = rates[n]["best"]
    assert best["false_exclusion"] <= 0.06 + allowance(0.06, REPS)
    assert best["best_excluded"] <= 0.06 + allowance(0.06, REPS)
    assert rates[10]["best"]["alone"] >= 0.8  # and finds it with enough seeds


@pytest.mark.parametrize("n", [3, 6, 10])
def test_false_cross_dataset_recommendations(rates, n):
    across = rates[n]["across"]
    assert across["false_recommendation"] <= 0.05 + allowance(0.05, STUDIES)
    assert across["mixed"] <= 0.05 + allowance(0.05, STUDIES)  # better on one, worse on one
    assert rates[6]["across"]["power"] >= 0.7


def test_noisier_data_need_more_seeds(rates):
    assert rates[6]["taxi"]["power"] < rates[6]["table"]["power"]


def test_the_measured_table_prints_one_row_per_seed_count():
    rates = {n: {"table": {"synthetic-la": {"false_decision": 0.05, "equivalent": 0.9,
                                            "false_equivalent": 0.02, "power": 0.8},
                           "sz-taxi": {"false_decision": 0.05, "equivalent": 0.5,
                                       "false_equivalent": 0.02, "power": 0.4}},
                 "table_heavy": {"false_decision": 0.04},
                 "best_set": {"false_exclusion": 0.04, "best_excluded": 0.01, "alone": 0.3},
                 "across": {"false_recommendation": 0.0, "mixed": 0.0, "power": 1.0}}
             for n in (3, 6)}
    text = format_rates(rates, 100)
    assert text.count("\n| ") == 3 and "| 6 | 5.0 %, 4.0 % |" in text

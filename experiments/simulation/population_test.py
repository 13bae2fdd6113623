"""Tests of the population model: eligibility, selection, dropout, stragglers, accounting."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from experiments import config as config_lib
from experiments.core.errors import UsageError
from experiments.privacy import accounting
from experiments.simulation import population, sampling

N, K = 300, 10
EXAMPLES = np.random.default_rng(7).integers(20, 400, size=N)
BITS_DOWN, BITS_UP = 8e6, 6e6


def make(seed: int = 0, mode: str = "uniform", **settings) -> population.Population:
    return population.Population(population.PopulationSettings(**settings), EXAMPLES, BITS_DOWN,
                                 BITS_UP, seed, mode, K)


@pytest.mark.parametrize("mode", ["uniform", "poisson", "cyclic"])
def test_defaults_select_exactly_what_sampling_does(mode):
    pop = make(mode=mode)
    for r in (1, 2, 17, 100):
        outcome = pop.round(r)
        expected = sampling.select_clients(mode, N, K, 0, r)
        np.testing.assert_array_equal(outcome.selected, expected)
        np.testing.assert_array_equal(outcome.completed, expected)
        assert outcome.row()["eligible"] == N
        assert outcome.dropped.size == outcome.late.size == 0
        assert outcome.cohort == (N, expected.size)
    assert not pop.changes_cohorts


def test_duration_is_download_compute_upload_of_the_slowest():
    pop = make(device_speed_sigma=0.0)
    outcome = pop.round(3)
    times = BITS_DOWN / 20e6 + EXAMPLES[outcome.completed] * 0.005 + BITS_UP / 5e6
    assert outcome.seconds == pytest.approx(times.max())
    speeds = population.device_speeds(N, 0.5, 0)
    assert np.median(speeds) == pytest.approx(1.0, rel=0.1)
    slow = make(device_speed_sigma=0.5).seconds
    np.testing.assert_allclose(slow, BITS_DOWN / 20e6 + EXAMPLES * 0.005 / speeds
                               + BITS_UP / 5e6)


def test_eligible_fraction_matches_the_profiles():
    pop = make(availability=0.3)
    profiles = population.eligibility_profiles(N, 0.3, 0)
    assert profiles.mean() == pytest.approx(0.3, abs=0.03)  # Beta mean, 300 draws
    counts = np.array([pop.round(r).eligible for r in range(1, 1001)])
    expected, std = profiles.sum(), math.sqrt((profiles * (1 - profiles)).sum())
    assert abs(counts.mean() - expected) < 4 * std / math.sqrt(len(counts))
    assert pop.changes_cohorts


def test_daily_cycle_follows_each_clients_phase():
    period, days = 24, 200
    pop = make(availability=0.2, availability_period=period)
    profiles = population.eligibility_profiles(N, 0.2, 0)
    phases = population.daily_phases(N, 0)
    hits = np.zeros(N)
    hourly = np.zeros(period)
    for r in range(1, period * days + 1):
        mask = np.zeros(N, bool)
        mask[pop.eligible(r)] = True
        hits += mask
        hourly[r % period] += mask.sum()
    rates = hits / (period * days)
    t = np.arange(period)[:, None]
    expected = np.minimum(1, profiles * (1 + np.cos(2 * np.pi * (t / period - phases)))).mean(0)
    assert np.abs(rates - expected).max() < 0.05
    low = profiles <= 0.5  # uncapped: the daily mean is the profile itself
    np.testing.assert_allclose(expected[low], profiles[low], atol=1e-9)
    assert hourly.max() > 1.05 * hourly.min()  # time zones do not cancel exactly


def test_selection_is_among_the_eligible_with_over_selection():
    pop = make(availability=0.1, over_selection=0.3)
    for r in range(1, 50):
        eligible = pop.eligible(r)
        outcome = pop.round(r)
        assert set(outcome.selected) <= set(eligible)
        assert outcome.selected.size == min(13, eligible.size)
        assert outcome.completed.size == min(K, outcome.selected.size)


def test_dropout_rate_is_the_fraction_that_fails():
    pop = make(dropout_rate=0.3)
    dropped = selected = 0
    for r in range(1, 501):
        outcome = pop.round(r)
        np.testing.assert_array_equal(outcome.completed,
                                      np.setdiff1d(outcome.selected, outcome.dropped))
        dropped += outcome.dropped.size
        selected += outcome.selected.size
    assert dropped / selected == pytest.approx(0.3, abs=0.03)


def test_over_selection_keeps_the_k_fastest():
    pop = make(over_selection=0.5, dropout_rate=0.1)
    for r in range(1, 20):
        outcome = pop.round(r)
        assert outcome.selected.size == 15
        reporting = np.setdiff1d(outcome.selected, outcome.dropped)
        fastest = reporting[np.argsort(pop.seconds[reporting])][:K]
        np.testing.assert_array_equal(outcome.completed, np.sort(fastest))
        np.testing.assert_array_equal(outcome.late, np.setdiff1d(reporting, fastest))
        assert outcome.seconds == pytest.approx(pop.seconds[fastest].max())
        assert outcome.seconds <= pop.seconds[reporting].max()


def test_deadline_drops_the_slow_and_the_round_waits_for_it():
    deadline = float(np.median(make().seconds))
    pop = make(round_deadline=deadline)
    for r in range(1, 20):
        outcome = pop.round(r)
        np.testing.assert_array_equal(
            outcome.completed, outcome.selected[pop.seconds[outcome.selected] <= deadline])
        assert np.all(pop.seconds[outcome.late] > deadline)
        waited = outcome.completed.size < K
        assert outcome.seconds == (deadline if waited
                                   else pytest.approx(pop.seconds[outcome.completed].max()))


def test_rounds_are_pure_functions_of_seed_and_round():
    a, b = make(availability=0.5, dropout_rate=0.2), make(availability=0.5, dropout_rate=0.2)
    late_first = [b.round(r) for r in (9, 3, 5)]
    for outcome, r in zip(late_first, (9, 3, 5), strict=True):
        np.testing.assert_array_equal(a.round(r).completed, outcome.completed)
    assert not np.array_equal(make(seed=1, availability=0.5).eligible(1),
                              make(seed=0, availability=0.5).eligible(1))


def test_survive_removes_stopped_clients_first():
    pop = make(dropout_rate=0.0)
    outcome = pop.round(4, lambda chosen: chosen[chosen % 2 == 0])
    assert np.all(outcome.selected % 2 == 0)
    np.testing.assert_array_equal(outcome.completed, outcome.selected)


def test_cohort_buckets_round_down_on_the_grid():
    grid = {math.floor(N * 2 ** (-j / 8)) for j in range(80)}
    for eligible in (0, 5, 89, 90, 150, 299, 300):
        bucket = accounting.cohort_bucket(N, eligible)
        assert bucket <= eligible and bucket in grid
        assert not [g for g in grid if bucket < g <= eligible]


def test_cohort_accounting_is_conservative():
    m = accounting.Mechanism("fixed", 1.0, K, N, "uniform", N ** -1.1)
    full = accounting.epsilon_rdp_cohorts(m, {(N, K): 50})
    assert full == pytest.approx(accounting.epsilon_rdp(m, 50))
    fewer_eligible = accounting.epsilon_rdp_cohorts(m, {(N, K): 25, (100, K): 25})
    over_selected = accounting.epsilon_rdp_cohorts(m, {(N, 13): 50})
    no_sampling = accounting.epsilon_rdp_cohorts(m, {(8, 8): 50})
    assert full < fewer_eligible < no_sampling
    assert full < over_selected
    assert accounting.epsilon_rdp_cohorts(m, {(0, 0): 10}) == 0.0
    assert no_sampling == pytest.approx(
        accounting.epsilon_rdp(dataclasses.replace(m, kind="local"), 50, 50))


@pytest.mark.parametrize("flags,fragment", [
    ({"availability": 0.0}, "--availability=0.0 must be in (0, 1]"),
    ({"availability_period": 24}, "--availability_period needs --availability below 1"),
    ({"dropout_rate": 1.0}, "--dropout_rate=1.0 must be in [0, 1)"),
    ({"round_deadline": -1.0}, "--round_deadline=-1.0 must be a finite number >= 0"),
    ({"over_selection": 0.3, "client_sampling": "poisson"},
     "--over_selection needs --client_sampling=uniform"),
    ({"dropout_rate": 0.3, "algorithm": "centralized"}, "--dropout_rate applies to federated"),
    ({"canary_repeats": 0}, "--canary_repeats=0 must be a positive integer"),
    ({"personalization_steps": -1}, "--personalization_steps=-1 must be an integer >= 0"),
    ({"personalization_learning_rate": -0.1},
     "--personalization_learning_rate=-0.1 must be >= 0 (0: use --client_learning_rate)"),
])
def test_bad_flags_are_one_line_errors(flags, fragment):
    with pytest.raises(UsageError, match=None) as caught:
        config_lib.validate(config_lib.ExperimentConfig(**flags))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)

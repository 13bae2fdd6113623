"""Accounting of rounds whose cohort the population shapes: never under-reported.

A client that has failed for good is removed after the draw; a client that has
not was drawn with the full cohort, so the accounted cohort is the one drawn.
The figures are the reproduced case: N = 300, K = 10, over-selection 0.1, 150
failed clients, z = 1, 100 rounds: epsilon 18.59 (accounting the cohort after
the removal reported 8.84).
"""

from __future__ import annotations

import dp_accounting as dpa
import numpy as np
import pytest

from experiments.privacy import accounting
from experiments.simulation import participation, population

N, K, ROUNDS = 300, 10, 100


def _cohorts(failed: int, over_selection: float = 0.1, dropout: float = 0.0
             ) -> dict[tuple[int, int], int]:
    pop = population.Population(
        population.PopulationSettings(over_selection=over_selection, dropout_rate=dropout),
        np.full(N, 100.0), 1e6, 1e6, seed=0, client_sampling="uniform",
        clients_per_round=K)
    mask = participation.failed_mask(failed, N, seed=0)
    cohorts: dict[tuple[int, int], int] = {}
    for r in range(1, ROUNDS + 1):
        outcome = pop.round(r, lambda chosen, r=r: participation.surviving(chosen, mask, r, 1))
        cohorts[outcome.cohort] = cohorts.get(outcome.cohort, 0) + 1
    return cohorts


def _direct_epsilon(drawn: int) -> float:
    """dp-accounting itself: ROUNDS uniform rounds of `drawn` of N, replace-one."""
    rdp = dpa.rdp.RdpAccountant(list(accounting._ORDERS),  # noqa: SLF001
                                dpa.NeighboringRelation.REPLACE_ONE)
    rdp.compose(dpa.SampledWithoutReplacementDpEvent(N, drawn, dpa.GaussianDpEvent(0.5)),
                ROUNDS)
    return rdp.get_epsilon(accounting.default_delta(N))


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_failed_and_dropped_clients_do_not_shrink_the_accounted_cohort(dropout):
    cohorts = _cohorts(failed=150, dropout=dropout)
    assert cohorts == {(N, 11): ROUNDS}  # ceil(1.1 K) drawn of all N, every round
    mechanism = accounting.Mechanism("fixed", 1.0, K, N, "uniform",
                                     accounting.default_delta(N))
    epsilon = accounting.epsilon_rdp_cohorts(mechanism, cohorts)
    assert epsilon == pytest.approx(18.59, abs=0.01)
    assert epsilon == pytest.approx(_direct_epsilon(11), rel=1e-9)


def test_the_cohort_after_removal_would_under_report():
    # The figure the cohort after removal gives: what the accounting must not print.
    assert _direct_epsilon(5) < 0.5 * _direct_epsilon(11)

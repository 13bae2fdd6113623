"""train.py's privacy set-up: noise and delta calibrated on the population sampled."""

from __future__ import annotations

import types

import pytest

from experiments import train
from experiments.config import ExperimentConfig
from experiments.privacy import accounting


def _task(clients: int) -> types.SimpleNamespace:
    """What privacy resolution reads of a task without --dp=distributed: its client ids."""
    return types.SimpleNamespace(train_data=types.SimpleNamespace(
        client_ids=[f"c{i}" for i in range(clients)]))


def test_target_epsilon_is_met_on_the_federation_not_all_training_clients():
    # 300 training clients, 100 of them non-participants: the trainer samples K of
    # the other 200, so z and the default delta are the 200's (calibrating on all
    # 300 gave z = 1.767 and then epsilon 11.84 in metrics.csv).
    config = ExperimentConfig(algorithm="fedavg_unweighted", dp="fixed", target_epsilon=8.0,
                              clients_per_round=20, total_rounds=100, non_participants=100)
    resolved = train._resolve_privacy(config, _task(300))  # noqa: SLF001
    assert resolved.delta == pytest.approx(200 ** -1.1)
    federation = accounting.Mechanism("fixed", resolved.noise_multiplier, 20, 200,
                                      "uniform", 200 ** -1.1)
    assert 7.9 < accounting.epsilon_rdp(federation, 100) <= 8.0


def test_a_simulated_deployment_is_calibrated_on_its_own_population():
    config = ExperimentConfig(algorithm="fedavg_unweighted", dp="fixed", target_epsilon=2.0,
                              client_sampling="poisson", clients_per_round=30,
                              total_rounds=150, noise_cohort_size=1000,
                              simulated_population=10**6)
    resolved = train._resolve_privacy(config, _task(300))  # noqa: SLF001
    assert resolved.delta == pytest.approx(1e6 ** -1.1)
    deployment = accounting.Mechanism("fixed", resolved.noise_multiplier, 1000, 10**6,
                                      "poisson", 1e6 ** -1.1)
    assert 1.98 < accounting.epsilon_rdp(deployment, 150) <= 2.0

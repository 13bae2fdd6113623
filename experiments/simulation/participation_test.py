"""simulation.participation: who federates, who fails, and the flags' one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from experiments import config as config_lib
from experiments.config import ExperimentConfig
from experiments.core.errors import UsageError
from experiments.simulation import participation


def test_non_participants_are_the_first_clients_and_never_federate() -> None:
    ids = [f"c{i}" for i in range(5)]
    assert participation.federated_clients(2, ids) == ["c2", "c3", "c4"]
    with pytest.raises(UsageError, match="--non_participants=5 leaves none"):
        participation.federated_clients(5, ids)


def test_failed_clients_are_seeded_and_drop_out_from_their_round() -> None:
    mask = participation.failed_mask(3, 10, seed=7)
    assert mask.sum() == 3
    np.testing.assert_array_equal(mask, participation.failed_mask(3, 10, seed=7))
    chosen = np.arange(10)
    np.testing.assert_array_equal(participation.surviving(chosen, mask, 3, 4), chosen)
    np.testing.assert_array_equal(participation.surviving(chosen, mask, 4, 4),
                                  np.flatnonzero(~mask))
    with pytest.raises(UsageError, match="--failed_clients=11 exceeds"):
        participation.failed_mask(11, 10, seed=0)


@pytest.mark.parametrize("settings, needle", [
    ({"cmapss_clients": 10}, "--cmapss_clients only applies to --task=cmapss_rul"),
    ({"heatmap_users": 5}, "--heatmap_users only applies to --task=heatmap"),
    ({"local_client": 1}, "--local_client only applies to --algorithm=local"),
    ({"algorithm": "local", "outlier_fraction": 0.1}, "--algorithm=local trains one client"),
    ({"fail_at_round": 0}, "--fail_at_round=0 must be a round number"),
    ({"non_participants": -1}, "--non_participants=-1 must be >= 0"),
])
def test_bad_flags_are_one_line_errors(settings: dict, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        config_lib.validate(ExperimentConfig(**settings))


def test_task_flags_reach_the_task_config() -> None:
    config = ExperimentConfig(task="cmapss_rul", cmapss_clients=10, cmapss_subsets="FD001")
    config_lib.validate(config)
    task_config = config.task_config()
    assert (task_config.cmapss_clients, task_config.cmapss_subsets) == (10, "FD001")
    heat = ExperimentConfig(task="heatmap", heatmap_users=5).task_config()
    assert heat.heatmap_users == 5

"""experiments.participation: who federates, who fails, and the flags' one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from experiments import config as config_lib
from experiments import participation
from experiments.config import ExperimentConfig
from experiments.errors import UsageError


def test_non_participants_are_the_first_clients_and_never_federate() -> None:
    ids = [f"c{i}" for i in range(5)]
    config = ExperimentConfig(non_participants=2)
    assert participation.federated_clients(config, ids) == ["c2", "c3", "c4"]
    with pytest.raises(UsageError, match="--non_participants=5 leaves none"):
        participation.federated_clients(ExperimentConfig(non_participants=5), ids)


def test_failed_clients_are_seeded_and_drop_out_from_their_round() -> None:
    config = ExperimentConfig(failed_clients=3, fail_at_round=4, seed=7)
    mask = participation.failed_mask(config, 10)
    assert mask.sum() == 3
    np.testing.assert_array_equal(mask, participation.failed_mask(config, 10))
    chosen = np.arange(10)
    np.testing.assert_array_equal(participation.surviving(chosen, mask, 3, 4), chosen)
    np.testing.assert_array_equal(participation.surviving(chosen, mask, 4, 4),
                                  np.flatnonzero(~mask))
    with pytest.raises(UsageError, match="--failed_clients=11 exceeds"):
        participation.failed_mask(ExperimentConfig(failed_clients=11), 10)


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

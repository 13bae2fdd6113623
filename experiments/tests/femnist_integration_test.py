"""End-to-end FedAvg on the real FEMNIST-300 data (300 writers, 62 classes).

The default run is short but must already end far above the naive
majority-class baseline; the slow run is the foundation's bar (200 rounds,
test accuracy >= 0.80) beside the centralised upper bound.
"""

from __future__ import annotations

import pytest

from experiments import config as config_lib
from experiments import train


def _config(data_dir: str, out: str, **overrides) -> config_lib.ExperimentConfig:
    settings = dict(
        task="emnist_character", model="cnn_dropout", algorithm="fedavg",
        data_dir=data_dir, clients_per_round=10, client_batch_size=20,
        client_learning_rate=0.1, server_learning_rate=1.0, seed=0,
        root_output_dir=out, progress=False)
    settings.update(overrides)
    config = config_lib.ExperimentConfig(**settings)
    config_lib.validate(config)
    return config


def test_short_fedavg_run_beats_naive_baseline(femnist300_dir, tmp_path):
    _, final = train.train(_config(femnist300_dir, str(tmp_path), total_rounds=30,
                                   rounds_per_eval=30))
    assert final["naive_accuracy"] < 0.1
    assert final["test_accuracy"] > 0.4
    assert final["test_accuracy"] > 4 * final["naive_accuracy"]


@pytest.mark.slow
def test_foundation_bar_200_rounds_and_centralized_bound(femnist300_dir, tmp_path):
    _, federated = train.train(_config(femnist300_dir, str(tmp_path), total_rounds=200,
                                       rounds_per_eval=50))
    _, central = train.train(_config(femnist300_dir, str(tmp_path), total_rounds=200,
                                     rounds_per_eval=50, algorithm="centralized"))
    assert federated["test_accuracy"] >= 0.80
    assert central["test_accuracy"] >= federated["test_accuracy"] - 0.02

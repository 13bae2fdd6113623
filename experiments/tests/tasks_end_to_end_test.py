"""Each task trained end to end through `experiments.train`, and the task flags' checks.

The tasks' own tests (tasks/*_test.py) check data, models and scoring without
the binaries; here a short real run of each task must beat its naive baseline.
Real data comes from ../shared/data (skipped without it); long runs are slow.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from experiments import config as config_lib
from experiments import train
from experiments.config import ExperimentConfig
from experiments.core.errors import UsageError
from experiments.core.paths import SHARED_DATA_DIR

REAL = os.path.join(SHARED_DATA_DIR, "cmapss")


@pytest.mark.parametrize("overrides, message", [
    (dict(task="stackoverflow_word", vocab_size=0), "--vocab_size=0 must be a positive"),
    (dict(task="stackoverflow_tag", tag_vocab_size=-1), "--tag_vocab_size=-1 must be"),
    (dict(task="stackoverflow_word", sequence_length=-2), "--sequence_length=-2 must be"),
    (dict(task="emnist_character", vocab_size=50), "--vocab_size only applies to"),
    (dict(task="stackoverflow_word", tag_vocab_size=50), "--tag_vocab_size only applies"),
    (dict(task="stackoverflow_tag", sequence_length=5), "--sequence_length only applies"),
    (dict(task="shakespeare_character", eval_split="heldout"), "--eval_split only applies"),
    (dict(dirichlet_alpha=0.1), "--dirichlet_alpha only applies to --partition=dirichlet"),
    (dict(partition="dirichlet", dirichlet_alpha=0.0), "--dirichlet_alpha=0.0 must be"),
    (dict(partition="iid", partition_clients=0), "--partition_clients=0 must be"),
    (dict(partition="shards", shards_per_client=0), "--shards_per_client=0 must be"),
    (dict(partition="quantity_skew", quantity_sigma=-1.0), "--quantity_sigma=-1.0 must be"),
])
def test_bad_flag_values_are_one_line_usage_errors(overrides, message):
    with pytest.raises(UsageError) as info:
        config_lib.validate(config_lib.ExperimentConfig(**overrides))
    assert message in str(info.value) and "\n" not in str(info.value)


def _se_config(stackexchange_dir: str, out: str, **settings) -> config_lib.ExperimentConfig:
    config = config_lib.ExperimentConfig(
        data_dir=stackexchange_dir, clients_per_round=10, max_elements_per_client=1000,
        root_output_dir=out, progress=False, **settings)
    config_lib.validate(config)
    return config


@pytest.mark.slow
def test_se_next_word_short_run_beats_most_frequent_word(stackexchange_dir, tmp_path):
    _, final = train.train(_se_config(
        stackexchange_dir, str(tmp_path), task="stackoverflow_word", model="lstm_small",
        client_batch_size=16, client_learning_rate=1.0, client_epochs_per_round=2,
        total_rounds=50, rounds_per_eval=50))
    assert 0.02 < final["naive_accuracy"] < 0.1
    assert final["test_accuracy"] > final["naive_accuracy"]


@pytest.mark.slow
def test_se_tags_pipeline_runs_level_with_tag_frequencies(stackexchange_dir, tmp_path):
    # A pipeline check, not a learning one: after 40 rounds AUC ~0.80 and recall@5
    # 0.200, where the tag-frequency ranking alone reaches AUC 0.8145 and recall@5
    # 0.2003 on SE-Bioinformatics (docs/results/text_and_autoencoder_tasks.md).
    _, final = train.train(_se_config(
        stackexchange_dir, str(tmp_path), task="stackoverflow_tag", client_batch_size=100,
        client_learning_rate=10.0, total_rounds=40, rounds_per_eval=40))
    assert final["test_auc"] > 0.75
    assert final["test_recall_at_5"] >= 0.9 * final["naive_recall_at_5"]


@pytest.mark.slow
def test_shakespeare_short_federated_run_beats_the_space_character(shakespeare_dir,
                                                                   tmp_path):
    # Measured (docs/results/text_and_autoencoder_tasks.md): at 16 sequences per client
    # the model leaves the space-only plateau between rounds 25 and 50 (0.241 vs 0.187);
    # at 4 per client it is still on it after 50 rounds (0.185).
    config = config_lib.ExperimentConfig(
        task="shakespeare_character", data_dir=shakespeare_dir, clients_per_round=10,
        client_batch_size=4, max_elements_per_client=16, client_learning_rate=1.0,
        server_learning_rate=1.0, total_rounds=50, rounds_per_eval=50,
        root_output_dir=str(tmp_path), progress=False)
    config_lib.validate(config)
    _, final = train.train(config)
    assert 0.1 < final["naive_accuracy"] < 0.25  # the space character
    assert final["test_accuracy"] > final["naive_accuracy"]


@pytest.mark.slow
def test_emnist_autoencoder_pipeline_runs_to_the_mean_image(femnist300_dir, tmp_path):
    # A pipeline check, not a learning one: FedAvg (client lr 10) sits on the
    # mean-image plateau for its first 100 rounds (mse 0.0178 vs the mean image's
    # 0.0175) while the error's absolute value keeps falling; Reddi et al. ran 3,000.
    config = config_lib.ExperimentConfig(
        task="emnist_autoencoder", data_dir=femnist300_dir, clients_per_round=10,
        client_batch_size=20, client_learning_rate=10.0, server_learning_rate=1.0,
        total_rounds=30, rounds_per_eval=30, root_output_dir=str(tmp_path), progress=False)
    config_lib.validate(config)
    _, final = train.train(config)
    assert final["test_mse"] < 1.05 * final["naive_mse"]
    assert final["test_mae"] < 0.055  # 0.061 after 10 rounds, 0.052 after 30


def test_heatmap_short_federated_run_beats_the_naive_model(tmp_path) -> None:
    config = ExperimentConfig(
        task="heatmap", clients_per_round=24, client_batch_size=8,
        client_epochs_per_round=10, client_learning_rate=1.0, total_rounds=5,
        rounds_per_eval=5, root_output_dir=str(tmp_path), progress=False)
    _, final = train.train(config)
    assert final["naive_accuracy"] == pytest.approx(0.5)
    assert final["test_accuracy"] > 0.75


@pytest.mark.slow
def test_cmapss_short_federated_run_beats_the_naive_model(tmp_path) -> None:
    if not os.path.isdir(REAL):
        pytest.skip(f"real data not found: {REAL}")
    config = ExperimentConfig(
        task="cmapss_rul", data_dir=REAL, clients_per_round=40, client_batch_size=32,
        client_learning_rate=0.01, total_rounds=10, rounds_per_eval=10,
        root_output_dir=str(tmp_path), progress=False)
    _, final = train.train(config)
    assert final["test_rmse"] < 0.9 * final["naive_rmse"]
    local = dataclasses.replace(config, algorithm="local", experiment_name="local")
    _, alone = train.train(local)
    assert alone["test_rmse"] > final["test_rmse"]

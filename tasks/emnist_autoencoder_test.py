"""EMNIST autoencoder: TFF's inputs and model on the fixture, a real-data run (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_federated.python.simulation.baselines.emnist import (
    emnist_models,
    emnist_preprocessing,
)

from experiments import config as config_lib
from experiments import train
from experiments.errors import UsageError
from tasks import emnist, emnist_autoencoder, registry, sql_client_data
from tasks.task import TaskConfig


def test_inputs_are_tffs_inverted_flattened_pixels(emnist_dir):
    task = registry.get("emnist_autoencoder", TaskConfig(data_dir=emnist_dir))
    client = task.train_data.client_ids[0]
    x, y = task.train_data.arrays(client)
    np.testing.assert_array_equal(x, y)
    raw = sql_client_data.load(
        f"{emnist_dir}/{emnist.DATA_FILE}", "all_train", emnist._parse,
        lambda a: (a["pixels"], a["label"]))
    pixels, _ = raw.arrays(client)
    preprocess = emnist_preprocessing.create_preprocess_fn(
        _spec(len(pixels)), emnist_task="autoencoder")
    (expected, _), = preprocess(tf.data.Dataset.from_tensor_slices(
        {"pixels": pixels, "label": np.zeros(len(pixels), np.int32)})).as_numpy_iterator()
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    assert task.scoring.primary == "mse"


def _spec(batch_size: int):
    from tensorflow_federated.python.simulation.baselines import client_spec

    return client_spec.ClientSpec(num_epochs=1, batch_size=batch_size, shuffle_buffer_size=1)


def test_model_has_tffs_architecture():
    ours = emnist_autoencoder.bottleneck(seed=0)
    reference = emnist_models.create_autoencoder_model(debug_seed=0)
    assert [w.shape for w in ours.weights] == [w.shape for w in reference.weights]
    assert ours.count_params() == 2_837_314
    reference.set_weights(ours.get_weights())
    x = np.random.default_rng(0).uniform(size=(3, 784)).astype(np.float32)
    np.testing.assert_allclose(ours(x).numpy(), reference(x).numpy(), rtol=1e-5)


def test_bad_model_is_one_line(emnist_dir):
    with pytest.raises(UsageError, match="--model=cnn is not a model of --task=emnist_auto"):
        registry.get("emnist_autoencoder", TaskConfig(data_dir=emnist_dir, model="cnn"))


@pytest.mark.slow
def test_short_run_reaches_mean_image(femnist300_dir, tmp_path):
    # Measured: FedAvg (client lr 10) sits on the mean-image plateau for its first 100
    # rounds (mse 0.0178 vs 0.0175) while the error's absolute value keeps falling.
    config = config_lib.ExperimentConfig(
        task="emnist_autoencoder", data_dir=femnist300_dir, clients_per_round=10,
        client_batch_size=20, client_learning_rate=10.0, server_learning_rate=1.0,
        total_rounds=30, rounds_per_eval=30, root_output_dir=str(tmp_path), progress=False)
    config_lib.validate(config)
    _, final = train.train(config)
    assert final["test_mse"] < 1.05 * final["naive_mse"]
    assert final["test_mae"] < 0.055  # 0.061 after 10 rounds, 0.052 after 30

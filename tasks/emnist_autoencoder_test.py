"""EMNIST autoencoder: TFF's inputs and model on the fixture, a real-data run (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_federated.python.simulation.baselines.emnist import (
    emnist_models,
    emnist_preprocessing,
)

from experiments.core.errors import UsageError
from tasks import emnist, emnist_autoencoder, registry, sql_client_data
from tasks.settings import TaskConfig


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



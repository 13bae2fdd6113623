"""EMNIST character recognition (62 classes, or 10 with --only_digits).

Clients are writers; data comes from TFF's own loader reading
`emnist_all.sqlite` in the cache dir. The same code runs on the full
3,400-writer EMNIST and on the FEMNIST-300 subset, which share the layout.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from experiments.errors import UsageError
from tasks import data_files, emnist_models
from tasks.task import Task, TaskConfig

DATA_FILE = "emnist_all.sqlite"


def _to_xy(element: collections.OrderedDict) -> tuple[tf.Tensor, tf.Tensor]:
    x = tf.expand_dims(element["pixels"], axis=-1)
    return x, tf.cast(element["label"], tf.int32)


def _to_batches(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    return dataset.batch(batch_size).map(_to_xy)


def _majority_class(train_labels: np.ndarray) -> int:
    return int(np.bincount(train_labels.astype(np.int64)).argmax())


def build_task(config: TaskConfig) -> Task:
    """EMNIST character recognition with the model named by --model."""
    if config.model not in emnist_models.MODELS:
        raise UsageError(
            f"--model={config.model} is not an EMNIST model; valid: "
            f"{', '.join(emnist_models.MODELS)}"
        )
    data_files.ensure_file(config.data_dir, DATA_FILE)
    train, test = tff.simulation.datasets.emnist.load_data(
        only_digits=config.only_digits, cache_dir=data_files.cache_dir(config.data_dir)
    )
    if not train.client_ids or not test.client_ids:
        split = "digits_only" if config.only_digits else "all"
        raise UsageError(
            f"{data_files.cache_dir(config.data_dir)}/{DATA_FILE} has no clients in "
            f"its {split}_train / {split}_test splits"
        )
    num_classes = 10 if config.only_digits else 62
    model_builder = emnist_models.MODELS[config.model]
    return Task(
        name="emnist_character",
        config=config,
        train_data=train,
        test_data=test,
        build_model=lambda seed: model_builder(num_classes, seed),
        to_batches=_to_batches,
        naive_predictor=_majority_class,
        description=f"EMNIST-{num_classes} character recognition, {config.model}",
    )

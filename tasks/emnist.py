"""EMNIST character recognition (62 classes, or 10 with --only_digits).

Clients are writers; data is TFF's `emnist_all.sqlite` in the cache dir
(downloaded by TFF's loader when absent), read through the client store (`client_store`).
The same code runs on the full 3,400-writer EMNIST and on the FEMNIST-300
subset, which share the layout.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf

from experiments.core.errors import UsageError
from tasks import client_store, data_files, emnist_models, sql_client_data
from tasks.settings import TaskConfig
from tasks.task import Task

DATA_FILE = "emnist_all.sqlite"
FULL_WRITERS = 3_400  # TFF's federated EMNIST; a file with fewer is a FEMNIST subset


def data_name(writers: int) -> str:
    """The data set's name from its writer count: EMNIST for TFF's full set, else the
    FEMNIST subset of that many writers (FEMNIST-300), never "EMNIST" for a subset."""
    return "EMNIST" if writers == FULL_WRITERS else f"FEMNIST-{writers}"


_FEATURES = {
    "pixels": tf.io.FixedLenFeature(shape=(28, 28), dtype=tf.float32),
    "label": tf.io.FixedLenFeature(shape=(), dtype=tf.int64),
}


def _parse(serialized: tf.Tensor) -> collections.OrderedDict:
    """One tf.train.Example of TFF's EMNIST layout, as TFF's own loader parses it."""
    features = tf.io.parse_single_example(serialized, _FEATURES)
    return collections.OrderedDict(
        label=tf.cast(features["label"], tf.int32), pixels=features["pixels"])


def _prepare(arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    """Stacked parsed examples to model inputs: images with a channel axis, labels."""
    return arrays["pixels"][..., np.newaxis], arrays["label"].astype(np.int32)


PREPARATION = client_store.Preparation("emnist", _parse, _prepare)


def build_task(config: TaskConfig) -> Task:
    """EMNIST character recognition with the model named by --model."""
    model = config.model or "cnn_dropout"
    if model not in emnist_models.MODELS:
        raise UsageError(
            f"--model={model} is not a model of --task=emnist_character; valid: "
            f"{', '.join(emnist_models.MODELS)}"
        )
    path = data_files.resolve(config.data_dir, DATA_FILE)
    split = "digits_only" if config.only_digits else "all"
    train = client_store.load(path, f"{split}_train", PREPARATION, config.data_store)
    test = client_store.load(path, f"{split}_test", PREPARATION, config.data_store)
    if train is None or test is None:
        raise UsageError(
            f"{path} has no clients in its {split}_train / {split}_test splits")
    num_classes = 10 if config.only_digits else 62
    writers = sql_client_data.client_count(path, "all_train")
    name = data_name(writers)
    model_builder = emnist_models.MODELS[model]
    return Task(
        name="emnist_character",
        config=config,
        train_data=train,
        test_data=test,
        build_model=lambda seed: model_builder(num_classes, seed),
        model_name=model,
        data_file=path,
        description=(f"{name} ({writers:,} writers{', digits only' if config.only_digits else ''}"
                     f", {num_classes} classes) character recognition, {model}"),
    )

"""EMNIST autoencoder (Reddi et al. 2021; TFF's baseline task).

Clients are EMNIST writers (`emnist_all.sqlite`, the same file and splits as
`emnist_character`; `--only_digits` picks the digits-only splits). Each
image is flattened and inverted as TFF's preprocessing does (x = 1 - pixels,
so ink is bright), and is its own target. Model: TFF's bottleneck
autoencoder (Hinton & Salakhutdinov 2006: dense 1000-500-250-30-250-500-
1000-784, sigmoid except the linear code layer). Scored by mean squared
error per pixel (`mse`, primary, lower is better) and `mae`; the naive
baseline outputs the mean training image for every input.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from experiments.core.errors import UsageError
from tasks import client_store, data_files, emnist
from tasks.scoring import ReconstructionScoring
from tasks.settings import TaskConfig
from tasks.task import Task

_FEATURES = {"pixels": tf.io.FixedLenFeature(shape=(28, 28), dtype=tf.float32)}
_WIDTHS = ((1000, "sigmoid"), (500, "sigmoid"), (250, "sigmoid"), (30, "linear"),
           (250, "sigmoid"), (500, "sigmoid"), (1000, "sigmoid"), (784, "sigmoid"))


def _parse(serialized: tf.Tensor) -> dict:
    """The pixels of one tf.train.Example of TFF's EMNIST layout."""
    return {"pixels": tf.io.parse_single_example(serialized, _FEATURES)["pixels"]}


def _prepare(arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    """Images to inverted, flattened inputs; the target is the same array (no copy)."""
    x = (1.0 - arrays["pixels"].reshape(-1, 28 * 28)).astype(np.float32)
    return x, x


PREPARATION = client_store.Preparation("emnist_autoencoder", _parse, _prepare)


def bottleneck(seed: int) -> tf.keras.Model:
    """TFF's `create_autoencoder_model`, with seeded Glorot initialisers."""
    layers = [tf.keras.layers.InputLayer(input_shape=(784,))]
    for i, (width, activation) in enumerate(_WIDTHS):
        layers.append(tf.keras.layers.Dense(
            width, activation=activation,
            kernel_initializer=tf.keras.initializers.GlorotUniform(seed=seed * 1000 + i)))
    return tf.keras.Sequential(layers)


MODELS: dict[str, Callable[[int], tf.keras.Model]] = {"bottleneck": bottleneck}


def build_task(config: TaskConfig) -> Task:
    """The EMNIST autoencoder with the model named by --model (default `bottleneck`)."""
    model = config.model or "bottleneck"
    if model not in MODELS:
        raise UsageError(f"--model={model} is not a model of --task=emnist_autoencoder; "
                         f"valid: {', '.join(MODELS)}")
    path = data_files.resolve(config.data_dir, emnist.DATA_FILE)
    split = "digits_only" if config.only_digits else "all"
    train = client_store.load(path, f"{split}_train", PREPARATION, config.data_store)
    test = client_store.load(path, f"{split}_test", PREPARATION, config.data_store)
    if train is None or test is None:
        raise UsageError(f"{path} has no clients in its {split}_train / {split}_test splits")
    return Task(
        name="emnist_autoencoder",
        config=config,
        train_data=train,
        test_data=test,
        build_model=MODELS[model],
        scoring=ReconstructionScoring(),
        model_name=model,
        data_file=path,
        description=f"EMNIST autoencoder ({split} splits), {model}",
    )

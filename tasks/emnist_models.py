"""Keras models for EMNIST character recognition, as in the FL literature.

`cnn_dropout` is the 1.2M-parameter CNN of Reddi et al. 2021 ("Adaptive
Federated Optimization"); `cnn` and `2nn` are the CNN and two-layer MLP of
McMahan et al. 2017; `logistic` is multinomial logistic regression. All
output logits (no softmax) so the loss can use the stable from-logits form.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

_INPUT_SHAPE = (28, 28, 1)


def _initializer(seed: int, index: int) -> tf.keras.initializers.Initializer:
    return tf.keras.initializers.GlorotUniform(seed=seed * 1000 + index)


def cnn_dropout(num_classes: int, seed: int) -> tf.keras.Model:
    """Two conv layers, max-pool, dropout 0.25, dense 128, dropout 0.5."""
    k = lambda i: {"kernel_initializer": _initializer(seed, i)}  # noqa: E731
    return tf.keras.Sequential(
        [
            tf.keras.layers.InputLayer(input_shape=_INPUT_SHAPE),
            tf.keras.layers.Conv2D(32, 3, activation="relu", **k(0)),
            tf.keras.layers.Conv2D(64, 3, activation="relu", **k(1)),
            tf.keras.layers.MaxPool2D(2),
            tf.keras.layers.Dropout(0.25, seed=seed),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(128, activation="relu", **k(2)),
            tf.keras.layers.Dropout(0.5, seed=seed + 1),
            tf.keras.layers.Dense(num_classes, **k(3)),
        ]
    )


def cnn(num_classes: int, seed: int) -> tf.keras.Model:
    """McMahan et al. 2017's CNN: two 5x5 conv + pool blocks and dense 512."""
    k = lambda i: {"kernel_initializer": _initializer(seed, i)}  # noqa: E731
    return tf.keras.Sequential(
        [
            tf.keras.layers.InputLayer(input_shape=_INPUT_SHAPE),
            tf.keras.layers.Conv2D(32, 5, padding="same", activation="relu", **k(0)),
            tf.keras.layers.MaxPool2D(2),
            tf.keras.layers.Conv2D(64, 5, padding="same", activation="relu", **k(1)),
            tf.keras.layers.MaxPool2D(2),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(512, activation="relu", **k(2)),
            tf.keras.layers.Dense(num_classes, **k(3)),
        ]
    )


def two_nn(num_classes: int, seed: int) -> tf.keras.Model:
    """McMahan et al. 2017's 2NN: two hidden layers of 200 ReLU units."""
    k = lambda i: {"kernel_initializer": _initializer(seed, i)}  # noqa: E731
    return tf.keras.Sequential(
        [
            tf.keras.layers.InputLayer(input_shape=_INPUT_SHAPE),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(200, activation="relu", **k(0)),
            tf.keras.layers.Dense(200, activation="relu", **k(1)),
            tf.keras.layers.Dense(num_classes, **k(2)),
        ]
    )


def logistic(num_classes: int, seed: int) -> tf.keras.Model:
    """Multinomial logistic regression on the 784 pixels."""
    return tf.keras.Sequential(
        [
            tf.keras.layers.InputLayer(input_shape=_INPUT_SHAPE),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(num_classes, kernel_initializer=_initializer(seed, 0)),
        ]
    )


MODELS: dict[str, Callable[[int, int], tf.keras.Model]] = {
    "cnn_dropout": cnn_dropout,
    "cnn": cnn,
    "2nn": two_nn,
    "logistic": logistic,
}

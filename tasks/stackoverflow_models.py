"""Keras models of the StackOverflow tasks (Reddi et al. 2021; TFF's baselines).

Next word: TFF's `create_recurrent_model` (embedding 96, one LSTM of 670
units, a dense projection to 96, dense logits over the extended vocabulary).
The embedding does not mask padding: padding only ever trails a sequence
and the LSTM is causal, so the logits at real positions are the same as with
TFF's `mask_zero=True` (the test checks it), and padded positions are left
out by the masked loss and metrics. `lstm_small` is the same shape at
embedding 32 / LSTM 64 for quick runs and tests.

Tags: multi-label logistic regression on a normalised bag of words. The
input is the example's in-vocabulary word ids padded with -1; a weightless
layer turns them into TFF's bag-of-words vector, so the weights are exactly
TFF's Dense(vocab -> tags) and a split needs ids, not 10,000 floats per
example, in memory. Outputs are logits (TFF's model ends in a sigmoid).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


def _glorot(seed: int, index: int) -> tf.keras.initializers.Initializer:
    return tf.keras.initializers.GlorotUniform(seed=seed * 1000 + index)


def recurrent(vocab_outputs: int, seed: int, embedding_size: int = 96,
              lstm_size: int = 670) -> tf.keras.Model:
    """TFF's next-word model over `vocab_outputs` ids (words + 4 special tokens)."""
    inputs = tf.keras.layers.Input(shape=(None,), dtype=tf.int32)
    embedded = tf.keras.layers.Embedding(
        vocab_outputs, embedding_size,
        embeddings_initializer=tf.keras.initializers.RandomUniform(
            -0.05, 0.05, seed=seed * 1000))(inputs)
    processed = tf.keras.layers.LSTM(
        lstm_size, return_sequences=True, kernel_initializer=_glorot(seed, 1),
        recurrent_initializer=tf.keras.initializers.Orthogonal(seed=seed * 1000 + 2))(
            embedded)
    projected = tf.keras.layers.Dense(embedding_size, kernel_initializer=_glorot(seed, 3))(
        processed)
    logits = tf.keras.layers.Dense(vocab_outputs, kernel_initializer=_glorot(seed, 4))(
        projected)
    return tf.keras.Model(inputs=inputs, outputs=logits)


WORD_MODELS: dict[str, Callable[[int, int], tf.keras.Model]] = {
    "lstm": recurrent,
    "lstm_small": lambda outputs, seed: recurrent(outputs, seed, 32, 64),
}


class BagOfWords(tf.keras.layers.Layer):
    """Word ids (-1 = none) to the normalised bag-of-words vector over `vocab_size` words."""

    def __init__(self, vocab_size: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size

    def call(self, ids):
        ids = tf.cast(ids, tf.int64)
        where = tf.where(ids >= 0)  # (row, position) of every real word
        rows = tf.shape(ids, out_type=tf.int64)[0]
        counts = tf.scatter_nd(
            tf.stack([where[:, 0], tf.gather_nd(ids, where)], axis=1),
            tf.ones(tf.shape(where)[:1], tf.float32), tf.stack([rows, self.vocab_size]))
        return tf.math.divide_no_nan(counts, tf.reduce_sum(counts, axis=1, keepdims=True))

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size}


def logistic(vocab_size: int, num_tags: int, seed: int) -> tf.keras.Model:
    """Multi-label logistic regression: bag of words -> one logit per tag."""
    inputs = tf.keras.layers.Input(shape=(None,), dtype=tf.int32)
    bag = BagOfWords(vocab_size)(inputs)
    logits = tf.keras.layers.Dense(num_tags, kernel_initializer=_glorot(seed, 0))(bag)
    return tf.keras.Model(inputs=inputs, outputs=logits)


TAG_MODELS: dict[str, Callable[[int, int, int], tf.keras.Model]] = {"logistic": logistic}

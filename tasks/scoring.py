"""How a task's predictions are scored: training loss and metrics, test columns, naive baseline.

Every task scores with one `Scoring`: it names the loss and the Keras metrics
used while training, and turns a batch of test labels and model outputs into
per-example (numerator, denominator) pairs. Sums of those pairs give the
pooled test metric and, grouped by owner, each test client's metric, so the
same code serves classification (accuracy), sequences (accuracy over real
tokens), multi-label tags (recall@k) and regression (RMSE). The naive
baseline is a constant output scored the same way, so `naive_<primary>`
always sits beside `test_<primary>`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_COUNT_ROWS = 1 << 16  # label rows counted at a time


def label_counts(labels: np.ndarray, exclude: tuple[int, ...] = ()) -> np.ndarray:
    """How often each integer label occurs (those in `exclude` not counted), read
    in row chunks: `labels` may be a memory-mapped split of millions of rows, whose
    int64 copy would not fit in memory."""
    counts = np.zeros(0, np.int64)
    for start in range(0, len(labels), _COUNT_ROWS):
        chunk = np.asarray(labels[start:start + _COUNT_ROWS]).ravel().astype(np.int64)
        if exclude:
            chunk = chunk[~np.isin(chunk, exclude)]
        part = np.bincount(chunk)
        if len(part) > len(counts):
            counts = np.pad(counts, (0, len(part) - len(counts)))
        counts[:len(part)] += part
    return counts

Pairs = dict[str, tuple[np.ndarray, np.ndarray]]


def _softmax_xent(y: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Per-position cross-entropy of integer labels under logits (numerically stable)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=-1))
    picked = np.take_along_axis(shifted, y[..., np.newaxis].astype(np.int64), axis=-1)[..., 0]
    return log_z - picked


class Scoring:
    """Scoring of single-label classification from logits (the default)."""

    primary = "accuracy"
    higher_is_better = True
    metric_names: tuple[str, ...] = ("accuracy",)
    train_metric_names: tuple[str, ...] = ("accuracy",)

    def loss(self) -> tf.keras.losses.Loss:
        """The training loss on the model's outputs."""
        return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def train_metrics(self) -> list[tf.keras.metrics.Metric]:
        """Keras metrics reported during training, named as `train_metric_names`."""
        return [tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def per_example(self, y: np.ndarray, outputs: np.ndarray) -> Pairs:
        """(numerator, denominator) per example for "loss" and every metric."""
        ones = np.ones(len(y))
        correct = (np.argmax(outputs, axis=-1) == y).astype(np.float64)
        return {"loss": (_softmax_xent(y, outputs), ones), "accuracy": (correct, ones)}

    def finish(self, name: str, ratio: float) -> float:
        """The reported value of a metric from its pooled numerator / denominator."""
        return ratio

    def pooled(self, y: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        """Metrics that do not decompose over examples (e.g. AUC); none here."""
        return {}

    needs_pooled_outputs = False

    def naive_output(self, train_y: np.ndarray, output_shape: tuple[int, ...]) -> np.ndarray:
        """One example's output of the trivial model: the majority class."""
        scores = np.zeros(output_shape, dtype=np.float32)
        scores[..., int(label_counts(train_y).argmax())] = 1.0
        return scores

    def naive_outputs(self, train_y: np.ndarray, num_examples: int,
                      output_shape: tuple[int, ...]) -> np.ndarray:
        """The naive model's outputs for all test examples (pooled, test clients in
        order): `naive_output` for each, unless a task's naive model looks at the example."""
        return np.broadcast_to(self.naive_output(train_y, output_shape),
                               (num_examples,) + tuple(output_shape))


class SequenceScoring(Scoring):
    """Next-token prediction: accuracy over real tokens, and over all positions.

    `special_ids` (padding, out-of-vocabulary, begin/end of sentence) are
    excluded from `accuracy` (as TFF's StackOverflow baseline and Reddi et
    al. 2021 report it) and included in `accuracy_with_special`; padding at
    `pad_id` never counts in either, nor in the loss.
    """

    metric_names = ("accuracy", "accuracy_with_special")

    def __init__(self, pad_id: int, special_ids: tuple[int, ...]):
        self._pad = pad_id
        self._special = tuple(special_ids)

    @property
    def pad_id(self) -> int:
        """The padding id, which no loss or metric counts."""
        return self._pad

    def loss(self) -> tf.keras.losses.Loss:
        """Cross-entropy averaged over real (non-padding) positions."""
        return MaskedSparseCrossentropy(self._pad)

    def train_metrics(self) -> list[tf.keras.metrics.Metric]:
        return [MaskedAccuracy(self._special + (self._pad,), name="accuracy")]

    def per_example(self, y: np.ndarray, outputs: np.ndarray) -> Pairs:
        real = y != self._pad
        counted = real & ~np.isin(y, self._special)
        # Vocabulary-sized logits (10,004 per position for StackOverflow): TF's fused
        # float32 kernels, several times faster than numpy here.
        logits = tf.convert_to_tensor(outputs, tf.float32)
        correct = tf.math.argmax(logits, axis=-1, output_type=tf.int64).numpy() == y
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.convert_to_tensor(y, tf.int64), logits=logits).numpy().astype(np.float64)
        return {
            "loss": ((xent * real).sum(axis=-1), real.sum(axis=-1)),
            "accuracy": ((correct & counted).sum(axis=-1), counted.sum(axis=-1)),
            "accuracy_with_special": ((correct & real).sum(axis=-1), real.sum(axis=-1)),
        }

    def naive_output(self, train_y: np.ndarray, output_shape: tuple[int, ...]) -> np.ndarray:
        """The most frequent real token at every position."""
        counts = label_counts(train_y, self._special + (self._pad,))
        if not counts.any():
            counts = label_counts(train_y, (self._pad,))
        scores = np.zeros(output_shape, dtype=np.float32)
        scores[..., int(counts.argmax())] = 1.0
        return scores


class MaskedSparseCrossentropy(tf.keras.losses.Loss):
    """Sparse cross-entropy from logits, averaged over positions whose label is not padding."""

    def __init__(self, pad_id: int, name: str = "masked_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pad_id = pad_id

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        xent = tf.keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        mask = tf.cast(tf.not_equal(y_true, self.pad_id), xent.dtype)
        return tf.reduce_sum(xent * mask, axis=-1) / tf.maximum(
            tf.reduce_sum(mask, axis=-1), 1.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "pad_id": self.pad_id}


class MaskedAccuracy(tf.keras.metrics.Metric):
    """Accuracy over positions whose label is none of `excluded` ids."""

    def __init__(self, excluded: tuple[int, ...], name: str = "accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.excluded = tuple(int(i) for i in excluded)
        self.correct = self.add_weight(name="correct", initializer="zeros")
        self.counted = self.add_weight(name="counted", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.int64)
        excluded = tf.constant(self.excluded or (-1,), dtype=tf.int64)
        keep = tf.reduce_all(tf.not_equal(y_true[..., tf.newaxis], excluded), axis=-1)
        hit = tf.equal(tf.argmax(y_pred, axis=-1), y_true) & keep
        self.correct.assign_add(tf.reduce_sum(tf.cast(hit, tf.float32)))
        self.counted.assign_add(tf.reduce_sum(tf.cast(keep, tf.float32)))

    def result(self):
        return tf.math.divide_no_nan(self.correct, self.counted)

    def reset_state(self):
        self.correct.assign(0.0)
        self.counted.assign(0.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "excluded": self.excluded}


class RegressionScoring(Scoring):
    """Scalar regression: mean squared error loss, RMSE as the primary metric.

    The naive model predicts the training targets' median; `target_scale`
    converts standardised outputs back to the target's units (e.g. cycles).
    """

    primary = "rmse"
    higher_is_better = False
    metric_names = ("rmse", "mae")
    train_metric_names = ("rmse",)

    def __init__(self, target_scale: float = 1.0):
        self._scale = float(target_scale)

    def loss(self) -> tf.keras.losses.Loss:
        return tf.keras.losses.MeanSquaredError()

    def train_metrics(self) -> list[tf.keras.metrics.Metric]:
        return [tf.keras.metrics.RootMeanSquaredError(name="rmse")]

    def per_example(self, y: np.ndarray, outputs: np.ndarray) -> Pairs:
        error = (np.reshape(outputs, (len(y), -1)) - np.reshape(y, (len(y), -1))) * self._scale
        ones = np.ones(len(y))
        return {"loss": (np.mean((error / self._scale) ** 2, axis=-1), ones),
                "rmse": (np.mean(error ** 2, axis=-1), ones),
                "mae": (np.mean(np.abs(error), axis=-1), ones)}

    def finish(self, name: str, ratio: float) -> float:
        return float(np.sqrt(ratio)) if name == "rmse" else ratio

    def naive_output(self, train_y: np.ndarray, output_shape: tuple[int, ...]) -> np.ndarray:
        return np.full(output_shape, np.median(train_y), dtype=np.float32)


class MultiLabelScoring(Scoring):
    """Multi-label prediction from logits: recall@k, precision@k and pooled AUC.

    The naive model ranks labels by their training frequency.
    """

    higher_is_better = True
    needs_pooled_outputs = True

    def __init__(self, k: int = 5):
        self._k = k
        self.primary = f"recall_at_{k}"
        self.metric_names = (f"recall_at_{k}", f"precision_at_{k}", "auc")
        self.train_metric_names = (f"recall_at_{k}",)

    def loss(self) -> tf.keras.losses.Loss:
        return tf.keras.losses.BinaryCrossentropy(from_logits=True)

    def train_metrics(self) -> list[tf.keras.metrics.Metric]:
        return [tf.keras.metrics.Recall(top_k=self._k, name=self.primary)]

    def per_example(self, y: np.ndarray, outputs: np.ndarray) -> Pairs:
        top = np.argsort(-outputs, axis=-1, kind="stable")[:, :self._k]
        hits = np.take_along_axis(y, top, axis=-1).sum(axis=-1).astype(np.float64)
        positives = y.sum(axis=-1).astype(np.float64)
        z = outputs.astype(np.float64)
        xent = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        ones = np.ones(len(y))
        return {"loss": (xent.mean(axis=-1), ones),
                self.primary: (hits, positives),
                f"precision_at_{self._k}": (hits, np.full(len(y), float(self._k)))}

    def pooled(self, y: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        """Micro-averaged ROC AUC over all (example, label) pairs."""
        return {"auc": roc_auc(y.ravel(), outputs.ravel())}

    def naive_output(self, train_y: np.ndarray, output_shape: tuple[int, ...]) -> np.ndarray:
        frequency = train_y.reshape(-1, output_shape[-1]).mean(axis=0)
        return np.broadcast_to(frequency, output_shape).astype(np.float32)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    labels = labels.astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


class ReconstructionScoring(Scoring):
    """Reconstruction (autoencoders): mean squared error per element, primary `mse`.

    Each example's error is averaged over its output elements (pixels), then
    over examples, as Keras' MeanSquaredError does; `mae` likewise. The naive
    model outputs the training targets' mean (the mean image) for every input.
    """

    primary = "mse"
    higher_is_better = False
    metric_names = ("mse", "mae")
    train_metric_names = ("mse",)

    def loss(self) -> tf.keras.losses.Loss:
        return tf.keras.losses.MeanSquaredError()

    def train_metrics(self) -> list[tf.keras.metrics.Metric]:
        return [tf.keras.metrics.MeanSquaredError(name="mse")]

    def per_example(self, y: np.ndarray, outputs: np.ndarray) -> Pairs:
        error = (np.reshape(outputs, (len(y), -1)).astype(np.float64)
                 - np.reshape(y, (len(y), -1)))
        squared = np.mean(error ** 2, axis=-1)
        ones = np.ones(len(y))
        return {"loss": (squared, ones), "mse": (squared, ones),
                "mae": (np.mean(np.abs(error), axis=-1), ones)}

    def naive_output(self, train_y: np.ndarray, output_shape: tuple[int, ...]) -> np.ndarray:
        mean = train_y.reshape((-1,) + tuple(output_shape)).mean(axis=0, dtype=np.float64)
        return mean.astype(np.float32)

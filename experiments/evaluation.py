"""Evaluation of a global model: centralised, per test client, and naive.

On eval rounds the model is scored on the pooled test split (centralised
accuracy and loss) and on each test client separately (the federated view:
mean and 10th / 50th / 90th percentile of per-client accuracy). The naive
baseline (e.g. predicting the training set's majority class) is scored on the
same test examples, so every result sits beside what it must beat.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tasks.task import Task

EVAL_COLUMNS = (
    "test_loss", "test_accuracy", "fed_test_accuracy_mean",
    "fed_test_accuracy_p10", "fed_test_accuracy_p50", "fed_test_accuracy_p90",
    "naive_accuracy",
)


def _collect(task: Task, batch_size: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pooled, owners = task.test_data.pooled_in_client_order()
    xs, ys = zip(*task.to_batches(pooled, batch_size).as_numpy_iterator(), strict=True)
    return np.concatenate(xs), np.concatenate(ys), owners


def train_labels(task: Task, batch_size: int = 4096) -> np.ndarray:
    """All training labels, pooled (what the naive predictor is fitted on)."""
    pooled = task.to_batches(task.train_data.create_tf_dataset_from_all_clients(),
                             batch_size)
    return np.concatenate([y for _, y in pooled.as_numpy_iterator()])


class Evaluator:
    """Scores model weights on the task's test clients."""

    def __init__(self, task: Task, seed: int):
        batch = task.config.eval_batch_size
        self._batch = batch
        self._x, self._y, self._owner = _collect(task, batch)
        self._num_clients = len(task.test_data.client_ids)
        self._model = task.build_model(seed)
        self._loss = tf.keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.NONE)
        self._forward = tf.function(lambda x: self._model(x, training=False))
        guess = task.naive_predictor(train_labels(task))
        self.naive_accuracy = float(np.mean(self._y == guess))

    def evaluate(self, weights: Sequence[np.ndarray]) -> dict[str, float]:
        """Eval columns for the model with these (Keras-ordered) weights."""
        self._model.set_weights(list(weights))
        losses, correct = [], []
        for start in range(0, len(self._y), self._batch):
            x = self._x[start:start + self._batch]
            y = self._y[start:start + self._batch]
            logits = self._forward(tf.constant(x))
            losses.append(self._loss(y, logits).numpy())
            correct.append(np.argmax(logits.numpy(), axis=-1) == y)
        losses, correct = np.concatenate(losses), np.concatenate(correct)
        counts = np.bincount(self._owner, minlength=self._num_clients)
        hits = np.bincount(self._owner, weights=correct, minlength=self._num_clients)
        per_client = hits[counts > 0] / counts[counts > 0]
        p10, p50, p90 = np.percentile(per_client, [10, 50, 90])
        return {
            "test_loss": float(np.mean(losses)),
            "test_accuracy": float(np.mean(correct)),
            "fed_test_accuracy_mean": float(np.mean(per_client)),
            "fed_test_accuracy_p10": float(p10),
            "fed_test_accuracy_p50": float(p50),
            "fed_test_accuracy_p90": float(p90),
            "naive_accuracy": self.naive_accuracy,
        }

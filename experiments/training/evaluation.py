"""Evaluation of a global model: centralised, per test client, and naive.

On eval rounds the model is scored on the pooled test split (test loss and
every metric of the task's scoring) and on each test client separately (the
federated view: mean and 10th / 50th / 90th percentile of the per-client
primary metric). The naive baseline (a constant output such as the training
set's majority class) is scored on the same test examples by the same code,
so every result sits beside what it must beat.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tasks.scoring import Scoring
from tasks.task import Task


def eval_columns(scoring: Scoring) -> tuple[str, ...]:
    """The metrics.csv columns an eval round fills, for a task's scoring."""
    primary = scoring.primary
    return (("test_loss",) + tuple(f"test_{m}" for m in scoring.metric_names)
            + tuple(f"fed_test_{primary}_{s}" for s in ("mean", "p10", "p50", "p90"))
            + (f"naive_{primary}",))


EVAL_COLUMNS = eval_columns(Scoring())  # classification tasks


def _collect(task: Task) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test split's (x, y) rows, client after client (the task's arrays themselves:
    memory-mapped from the client store, they are read batch by batch, not copied),
    and each row's client index."""
    x, y = task.test_data.pooled_arrays()
    owners = np.repeat(np.arange(len(task.test_data.client_ids), dtype=np.int32),
                       task.test_data.sizes())
    return x, y, owners


def train_labels(task: Task) -> np.ndarray:
    """All training labels, client after client (what the naive model is fitted on;
    a view of the task's array, not a copy)."""
    return task.train_data.pooled_arrays()[1]


class _Sums:
    """Per-client running sums of a scoring's (numerator, denominator) pairs."""

    def __init__(self, num_clients: int):
        self._n = num_clients
        self.num: dict[str, np.ndarray] = {}
        self.den: dict[str, np.ndarray] = {}

    def add(self, pairs: dict, owners: np.ndarray) -> None:
        for name, (num, den) in pairs.items():
            for store, values in ((self.num, num), (self.den, den)):
                counts = np.bincount(owners, weights=np.asarray(values, np.float64),
                                     minlength=self._n)
                store[name] = store.get(name, 0.0) + counts

    def pooled(self, name: str) -> float:
        return float(self.num[name].sum() / max(self.den[name].sum(), 1e-12))

    def per_client(self, name: str) -> np.ndarray:
        den = self.den[name]
        return self.num[name][den > 0] / den[den > 0]


class Evaluator:
    """Scores model weights on the task's test clients."""

    def __init__(self, task: Task, seed: int):
        batch = task.config.eval_batch_size
        self._batch = batch
        self._scoring = task.scoring
        self._x, self._y, self._owner = _collect(task)
        self._num_clients = len(task.test_data.client_ids)
        self._model = task.build_model(seed)
        # One trace for every batch size (the first, full and last batches differ).
        self._forward = tf.function(
            lambda x: self._model(x, training=False),
            input_signature=[tf.TensorSpec((None, *self._x.shape[1:]),
                                           tf.as_dtype(self._x.dtype))])
        output_shape = tuple(self._forward(tf.constant(self._x[:1])).shape[1:])
        naive = task.scoring.naive_outputs(train_labels(task), len(self._y), output_shape)
        self.naive = self._score(lambda start, stop: naive[start:stop])[task.scoring.primary]
        self.columns = eval_columns(task.scoring)
        self.primary_column = f"test_{task.scoring.primary}"

    def _score(self, outputs_for) -> dict[str, float]:
        scoring, sums, kept = self._scoring, _Sums(self._num_clients), []
        for start in range(0, len(self._y), self._batch):
            stop = min(start + self._batch, len(self._y))
            outputs = outputs_for(start, stop)
            sums.add(scoring.per_example(self._y[start:stop], outputs),
                     self._owner[start:stop])
            if scoring.needs_pooled_outputs:
                kept.append(np.asarray(outputs))
        values = {name: scoring.finish(name, sums.pooled(name)) for name in sums.num}
        if kept:
            values.update(scoring.pooled(self._y, np.concatenate(kept)))
        per_client = [scoring.finish(scoring.primary, v)
                      for v in sums.per_client(scoring.primary)]
        values["_per_client"] = np.asarray(per_client)
        return values

    def evaluate(self, weights: Sequence[np.ndarray],
                 own: dict[str, Sequence[np.ndarray]] | None = None) -> dict[str, float]:
        """Eval columns for the model with these (Keras-ordered) weights (`own`, the
        clients' own models, is for the personalising evaluator that wraps this one)."""
        del own
        self._model.set_weights(list(weights))
        values = self._score(lambda start, stop: self._forward(
            tf.constant(self._x[start:stop])).numpy())
        primary = self._scoring.primary
        per_client = values.pop("_per_client")
        p10, p50, p90 = np.percentile(per_client, [10, 50, 90])
        row = {"test_loss": values["loss"]}
        row.update({f"test_{m}": values[m] for m in self._scoring.metric_names})
        row.update({f"fed_test_{primary}_mean": float(np.mean(per_client)),
                    f"fed_test_{primary}_p10": float(p10),
                    f"fed_test_{primary}_p50": float(p50),
                    f"fed_test_{primary}_p90": float(p90),
                    f"naive_{primary}": self.naive})
        return row

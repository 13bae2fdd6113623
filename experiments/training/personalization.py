"""Personalisation evaluation: each test client's score before and after local fine-tuning.

A global model serves some clients far better than others. As in TFF's
personalisation evaluation (Wang et al. 2019, "Federated Evaluation of
On-device Personalization"), each test client that also has a training split
under the same client id (true of EMNIST's writers) takes a copy of the
global model, runs `--personalization_steps` plain SGD steps (batch
`--client_batch_size`, rate `--personalization_learning_rate`, by default
`--client_learning_rate`) on its own training
data, in a seeded order, and is scored on its own test data. The before and
after scores are reported as distributions (mean, 10th / 50th / 90th
percentile over clients) in eval rows, and per client in
`personalization.csv` in the experiment folder (latest eval round).

When training leaves clients a model of their own (Ditto's personal models,
or the shared layers with a client's local layers; `--ditto_lambda`,
`--local_layers`), each such client's own model is scored the same way, as
the 'own' distribution, beside the global model's ('before') and, with
fine-tuning steps, the fine-tuned copy's ('after').
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from experiments.core import results
from experiments.training.settings import PersonalizationSettings
from tasks.scoring import Scoring
from tasks.task import Task

CSV_NAME = "personalization.csv"
_ORDER_STREAM = 0x9E5  # seeds each client's fine-tuning order
_STATS = ("mean", "p10", "p50", "p90")


def columns(steps: int, scoring: Scoring, own: bool = False) -> tuple[str, ...]:
    """The eval columns personalisation fills: the global model's distribution
    ('before'), after `steps` of fine-tuning ('after'), and each client's own model's
    ('own', Ditto or local layers); none when there is neither."""
    if steps <= 0 and not own:
        return ()
    primary = scoring.primary
    stages = ("before",) + (("after",) if steps > 0 else ()) + (("own",) if own else ())
    return (("personal_clients",) + (("personal_own_clients",) if own else ())
            + tuple(f"personal_{primary}_{when}_{s}" for when in stages for s in _STATS))


def distribution(values: np.ndarray) -> dict[str, float]:
    """Mean and 10th / 50th / 90th percentiles."""
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"mean": float(np.mean(values)), "p10": float(p10), "p50": float(p50),
            "p90": float(p90)}


def batch_indices(size: int, steps: int, batch: int, seed: int, client: int
                  ) -> list[np.ndarray]:
    """Example indices of each fine-tuning step: seeded permutations, back to back."""
    rng = np.random.default_rng([seed, _ORDER_STREAM, client])
    need = steps * min(batch, size)
    order = np.concatenate([rng.permutation(size) for _ in range(-(-need // size))])
    step = min(batch, size)
    return [order[i * step:(i + 1) * step] for i in range(steps)]


class Personalizer:
    """Fine-tunes copies of a global model on each test client's training data."""

    def __init__(self, task: Task, steps: int, batch_size: int, learning_rate: float,
                 seed: int, own: bool = False):
        """`own`: training leaves clients models of their own, so rows carry the 'own'
        columns (`columns(..., own=True)`), even before any client has one."""
        self._task, self._steps, self._batch = task, steps, batch_size
        self._seed, self._own = seed, own
        self._scoring = task.scoring
        train_ids = set(task.train_data.client_ids)
        self.clients = [c for c in task.test_data.client_ids if c in train_ids]
        self._model = task.build_model(seed)
        loss_fn = task.loss()
        variables = self._model.trainable_variables
        rate = tf.constant(learning_rate, tf.float32)

        @tf.function(reduce_retracing=True)
        def train_step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, self._model(x, training=True))
            for variable, grad in zip(variables, tape.gradient(loss, variables),
                                      strict=True):
                variable.assign_sub(rate * grad)

        self._train_step = train_step
        self._forward = tf.function(lambda x: self._model(x, training=False),
                                    reduce_retracing=True)

    def _score(self, x: np.ndarray, y: np.ndarray) -> float:
        outputs = np.concatenate([
            self._forward(tf.constant(x[i:i + 500])).numpy() for i in range(0, len(y), 500)])
        primary = self._scoring.primary
        num, den = self._scoring.per_example(y, outputs)[primary]
        return self._scoring.finish(primary, float(np.sum(num) / max(np.sum(den), 1e-12)))

    def client_scores(self, weights: Sequence[np.ndarray],
                      own: dict[str, Sequence[np.ndarray]] | None = None) -> list[dict]:
        """Per client: id, example counts, the global model's score ('before'), after
        fine-tuning it ('after', with steps), and its own model's ('own', if it has one)."""
        records = []
        for index, client in enumerate(self.clients):
            self._model.set_weights(list(weights))
            test_x, test_y = self._task.test_data.arrays(client)
            train_x, train_y = self._task.train_data.arrays(client)
            record = {"client_id": client, "train_examples": len(train_y),
                      "test_examples": len(test_y), "before": self._score(test_x, test_y),
                      "after": "", "own": ""}
            if self._steps > 0:
                for idx in batch_indices(len(train_y), self._steps, self._batch, self._seed,
                                         index):
                    self._train_step(tf.constant(train_x[idx]), tf.constant(train_y[idx]))
                record["after"] = self._score(test_x, test_y)
            if own and client in own:
                self._model.set_weights(list(own[client]))
                record["own"] = self._score(test_x, test_y)
            records.append(record)
        return records

    def row(self, records: list[dict]) -> dict:
        """The eval columns of a list of client records."""
        primary = self._scoring.primary
        row = {"personal_clients": len(records)}
        for when in ("before", "after", "own"):
            values = np.array([r[when] for r in records if r[when] != ""])
            if when == "own" and self._own:
                row["personal_own_clients"] = len(values)
            if len(values):
                row.update({f"personal_{primary}_{when}_{k}": v
                            for k, v in distribution(values).items()})
        return row


def write_csv(path: str, records: list[dict]) -> None:
    """The per-client records as a CSV, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["client_id", "train_examples", "test_examples",
                                     "before", "after", "own"], lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(record)
    results.atomic_write(path, buffer.getvalue().encode())


class PersonalizingEvaluator:
    """An Evaluator that adds personalisation columns to every eval row."""

    def __init__(self, evaluator, personalizer: Personalizer, folder: str):
        self._inner, self._personalizer, self._folder = evaluator, personalizer, folder

    def __getattr__(self, name: str):
        return getattr(self._inner, name)  # primary_column, naive, columns

    def evaluate(self, weights: Sequence[np.ndarray],
                 own: dict[str, Sequence[np.ndarray]] | None = None) -> dict[str, float]:
        """The wrapped evaluator's row plus the personalisation distributions (`own`:
        client id -> that client's own model, for Ditto and local layers)."""
        row = self._inner.evaluate(weights)
        records = self._personalizer.client_scores(weights, own)
        row.update(self._personalizer.row(records))
        write_csv(os.path.join(self._folder, CSV_NAME), records)
        return row


def fine_tuning_rate(settings: PersonalizationSettings, client_learning_rate: float) -> float:
    """The personalisation SGD rate: its own flag, else the clients' training rate."""
    return settings.personalization_learning_rate or client_learning_rate


def wrap(evaluator, task: Task, settings: PersonalizationSettings,
         client_learning_rate: float, seed: int, folder: str):
    """`evaluator` with personalisation when --personalization_steps > 0 or training
    leaves each client a model of its own.

    Fine-tuning batches as the clients train (the task's client batch size).
    """
    if settings.personalization_steps <= 0 and not settings.keeps_personal_models:
        return evaluator
    personalizer = Personalizer(task, settings.personalization_steps,
                                task.config.client_batch_size,
                                fine_tuning_rate(settings, client_learning_rate), seed,
                                own=settings.keeps_personal_models)
    return PersonalizingEvaluator(evaluator, personalizer, folder)

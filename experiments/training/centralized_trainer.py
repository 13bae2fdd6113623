"""The centralised upper bound: the same model trained on the pooled data.

"Walk before you run": a federated result is judged against the same model
trained centrally on the union of the clients' training data. A centralised
"round" processes as many examples as a federated round does on average
(clients_per_round x mean client size x local epochs), with client SGD at the
client learning rate, so learning curves line up round for round.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from experiments.config import ExperimentConfig
from experiments.simulation import sampling
from tasks.task import SHUFFLE_BUFFER, Task


def _mean_client_examples(task: Task, cap: int | None) -> float:
    sizes = [task.train_data.num_examples(c) for c in task.train_data.client_ids]
    return float(np.mean([min(n, cap) if cap else n for n in sizes]))


class CentralizedTrainer:
    """Trains one Keras model on pooled data, a round's worth of steps at a time."""

    def __init__(self, config: ExperimentConfig, task: Task):
        self._config = config
        self._task = task
        self.summary: dict = {}  # nothing beyond the data's summary to record
        self._model = task.build_model(config.seed)
        self._optimizer = tf.keras.optimizers.SGD(config.client_learning_rate)
        self._loss = task.loss()
        self._metrics = task.scoring.train_metrics()
        mean_size = _mean_client_examples(task, task.config.max_elements_per_client)
        examples = config.clients_per_round * mean_size * config.client_epochs_per_round
        self.steps_per_round = max(1, int(round(examples / config.client_batch_size)))
        self._step = tf.function(self._train_step)

    def _train_step(self, x, y):
        with tf.GradientTape() as tape:
            logits = self._model(x, training=True)
            loss = self._loss(y, logits)
        grads = tape.gradient(loss, self._model.trainable_variables)
        self._optimizer.apply_gradients(zip(grads, self._model.trainable_variables, strict=True))
        for metric in self._metrics:
            metric.update_state(y, logits)
        return loss, tf.shape(y)[0]

    def initial_state(self) -> list[np.ndarray]:
        """The seeded initial weights."""
        return self._model.get_weights()

    def run_round(self, state: list[np.ndarray], round_num: int):
        """Trains steps_per_round batches drawn from a per-round seeded shuffle."""
        self._model.set_weights(state)
        for metric in self._metrics:
            metric.reset_state()
        seed = sampling.pooled_shuffle_seed(self._config.seed, round_num)
        pooled = self._task.train_data.create_tf_dataset_from_all_clients(seed=seed)
        batches = self._task.to_batches(
            pooled.shuffle(SHUFFLE_BUFFER, seed=seed).repeat(),
            self._config.client_batch_size).take(self.steps_per_round)
        total_loss, examples = 0.0, 0
        for x, y in batches:
            loss, n = self._step(x, y)
            total_loss += float(loss) * int(n)
            examples += int(n)
        row = {"train_loss": total_loss / examples, "train_examples": examples,
               "clients": 0, "bytes_down_per_client": 0, "bytes_up_per_client": 0}
        row.update({f"train_{m.name}": float(m.result()) for m in self._metrics})
        return self._model.get_weights(), row

    def model_weights(self, state: list[np.ndarray]) -> list[np.ndarray]:
        """The model's weights (the state is just the weights)."""
        return state

    def personal_models(self, state) -> dict:
        """No client keeps a model of its own."""
        del state
        return {}

    def to_arrays(self, state: list[np.ndarray]) -> list[np.ndarray]:
        """Checkpoint form of the state."""
        return list(state)

    def from_arrays(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Inverse of to_arrays."""
        return list(arrays)

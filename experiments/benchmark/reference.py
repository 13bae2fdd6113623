"""The compiled centralised reference: a round's examples trained in one tf.function.

Every federated timing is set against this loop on exactly the round's
examples (the same `task.preprocess_train` pipelines of the same clients,
concatenated), with the same model, SGD at the client learning rate and the
same batch size: the ratio is the price of federation on this machine.
"""

from __future__ import annotations

import time
from typing import Any

import tensorflow as tf

from experiments.config import ExperimentConfig
from experiments.training.federated_trainer import sampled_client_datasets


def balanced_concatenate(datasets: list) -> Any:
    """Concatenates in order, as a balanced tree (no 100-deep iterator chains)."""
    while len(datasets) > 1:
        paired = [a.concatenate(b) for a, b in zip(datasets[::2], datasets[1::2],
                                                   strict=False)]
        if len(datasets) % 2:
            paired.append(datasets[-1])
        datasets = paired
    return datasets[0]


class GraphLoopReference:
    """Centralised SGD over one dataset in a single tf.function call.

    The `for batch in dataset` loop is inside the graph, so there is no
    per-batch Python: the fastest way this machine trains the same model on
    the same batches.
    """

    def __init__(self, config: ExperimentConfig, task: Any):
        self._config = config
        self._task = task
        self._model = task.build_model(config.seed)
        self._optimizer = tf.keras.optimizers.SGD(config.client_learning_rate)
        self._optimizer.build(self._model.trainable_variables)
        self._loss = task.loss()
        self._train = tf.function(self._train_all)

    def _train_all(self, dataset: Any) -> tuple[Any, Any, Any]:
        variables = self._model.trainable_variables
        examples = tf.constant(0, tf.int32)
        loss_sum = tf.constant(0.0, tf.float32)
        correct = tf.constant(0, tf.int32)
        for x, y in dataset:
            with tf.GradientTape() as tape:
                logits = self._model(x, training=True)
                loss = self._loss(y, logits)
            grads = tape.gradient(loss, variables)
            self._optimizer.apply_gradients(zip(grads, variables, strict=True))
            n = tf.shape(y)[0]
            examples += n
            loss_sum += loss * tf.cast(n, tf.float32)
            predicted = tf.cast(tf.argmax(logits, axis=-1), y.dtype)
            correct += tf.reduce_sum(tf.cast(tf.equal(predicted, y), tf.int32))
        return examples, loss_sum, correct

    def client_datasets(self, round_num: int, clients_per_round: int) -> list:
        """The round's client datasets exactly as FederatedTrainer builds them."""
        return sampled_client_datasets(self._task, self._config, round_num, clients_per_round)

    def round_dataset(self, round_num: int, clients_per_round: int) -> Any:
        """The round's examples as one dataset, clients in order."""
        return balanced_concatenate(self.client_datasets(round_num, clients_per_round))

    def run(self, round_num: int, clients_per_round: int) -> tuple[float, float, int]:
        """Trains on the round's examples; returns (seconds, build seconds, examples).

        The time covers building the pipelines too, as a federated round's does;
        build seconds is that part alone.
        """
        began = time.perf_counter()
        dataset = self.round_dataset(round_num, clients_per_round)
        built = time.perf_counter()
        examples, _, _ = self._train(dataset)
        examples = int(examples)  # waits for the result
        return time.perf_counter() - began, built - began, examples

    def traces(self) -> int:
        """How many times the training function was traced (1 when all went well)."""
        return int(self._train.experimental_get_tracing_count())

"""One federated round at a time: sample clients, build their data, run TFF.

Wraps the learning process from `experiments.process` behind the small
interface the loop drives (initial state, one round, weights, checkpoint
arrays), so the centralised baseline can be driven the same way.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from experiments import communication, process, sampling
from experiments.config import ExperimentConfig
from experiments.errors import UsageError
from tasks.task import Task


def _train_metrics(metrics) -> dict:
    train = metrics["client_work"]["train"]
    return {
        "train_loss": float(train["loss"]),
        "train_accuracy": float(train["accuracy"]),
        "train_examples": int(train["num_examples"]),
    }


class FederatedTrainer:
    """Drives a TFF learning process round by round."""

    def __init__(self, config: ExperimentConfig, task: Task):
        self._config = config
        self._task = task
        self._client_ids = task.train_data.client_ids
        if config.clients_per_round > len(self._client_ids):
            raise UsageError(
                f"--clients_per_round={config.clients_per_round} exceeds the "
                f"{len(self._client_ids)} training clients of --task={config.task}; "
                f"use at most {len(self._client_ids)}")
        self._process = process.build(config, task)
        keras_model = task.build_model(config.seed)
        self._initial_weights = tff.learning.models.ModelWeights.from_model(keras_model)
        down, up = communication.bytes_per_client(
            config, self._initial_weights.trainable, self._initial_weights.non_trainable)
        self._bytes = {"bytes_down_per_client": down, "bytes_up_per_client": up}

    @property
    def population(self) -> int:
        """Number of training clients."""
        return len(self._client_ids)

    def initial_state(self):
        """Server state with the seeded initial model."""
        state = self._process.initialize()
        return self._process.set_model_weights(state, self._initial_weights)

    def run_round(self, state, round_num: int):
        """Runs round `round_num`; returns the new state and the round's metrics."""
        cfg = self._config
        chosen = sampling.sample_clients(
            self.population, cfg.clients_per_round, cfg.seed, round_num)
        datasets = [
            self._task.preprocess_train(
                self._task.train_data.create_tf_dataset_for_client(self._client_ids[i]),
                sampling.client_shuffle_seed(cfg.seed, round_num, i))
            for i in chosen
        ]
        output = self._process.next(state, datasets)
        row = _train_metrics(output.metrics)
        row.update(self._bytes, clients=len(chosen))
        return output.state, row

    def model_weights(self, state) -> list[np.ndarray]:
        """The global model's weights in Keras order."""
        weights = self._process.get_model_weights(state)
        return [np.asarray(w) for w in list(weights.trainable) + list(weights.non_trainable)]

    def to_arrays(self, state) -> list[np.ndarray]:
        """The full server state (model and optimizer) as a flat list of arrays."""
        return [np.asarray(x) for x in tf.nest.flatten(state)]

    def from_arrays(self, arrays: list[np.ndarray]):
        """Inverse of to_arrays."""
        template = self._process.initialize()
        flat = tf.nest.flatten(template)
        if len(flat) != len(arrays) or any(
                np.shape(a) != np.shape(b) for a, b in zip(flat, arrays, strict=True)):
            raise UsageError("checkpoint does not match this model; use --overwrite")
        return tf.nest.pack_sequence_as(template, arrays)

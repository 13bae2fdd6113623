"""Ditto (Li et al. 2021, ICML): a personal model per client, regularised towards the global.

Alongside any federated algorithm's global training, each client keeps a
personal model v (experiments.algorithms.client_state; the initial model until
its first round). When the client completes a round it also runs its local
epochs over the same data on v with SGD at the client learning rate and the
gradient of f(v) + lambda/2 ||v - w||^2, w the global model it received that
round (the paper's Algorithm 1 with one personal pass per participation).
v never leaves the client and does not touch the global update, so the global
model's guarantees (DP included) are unchanged. Personal models are scored on
each client's own test data (experiments.training.personalization).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from experiments.algorithms.client_state import ClientStates
from tasks.task import Task


class DittoClients:
    """The clients' personal models and the step that trains them."""

    def __init__(self, task: Task, seed: int, learning_rate: float, strength: float):
        self._model = task.build_model(seed)
        self.states = ClientStates([np.asarray(w) for w in self._model.trainable_weights])
        variables = self._model.trainable_variables
        loss_fn = task.loss()
        rate = tf.constant(learning_rate, tf.float32)
        lam = tf.constant(strength, tf.float32)

        @tf.function(reduce_retracing=True)
        def step(x, y, anchor):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, self._model(x, training=True))
                if self._model.losses:
                    loss = tf.add_n([loss] + self._model.losses)
            grads = tape.gradient(loss, variables)
            for v, g, a in zip(variables, grads, anchor, strict=True):
                v.assign_sub(rate * (g + lam * (v - a)))

        self._step = step

    def train(self, clients: Sequence[int], datasets: Sequence[tf.data.Dataset],
              global_trainable: Sequence[np.ndarray]) -> None:
        """Each client's personal pass over its round's data (a non-finite result is
        dropped: the client keeps its previous personal model)."""
        anchor = [tf.constant(w) for w in global_trainable]
        variables = self._model.trainable_variables
        for client, dataset in zip(clients, datasets, strict=True):
            for v, value in zip(variables, self.states.get(client), strict=True):
                v.assign(value)
            for x, y in dataset:
                self._step(x, y, anchor)
            trained = [v.numpy() for v in variables]
            if all(np.all(np.isfinite(t)) for t in trained):
                self.states.put(client, trained)

"""SCAFFOLD (Karimireddy et al. 2020, ICML): local SGD corrected by control variates.

The server keeps the model x and a control variate c; client i keeps its own
c_i (experiments.algorithms.client_state; zero until its first round). A round:

- each sampled client receives x and c, runs its local epochs of SGD from x
  with every step's gradient corrected by c - c_i (y <- y - lr (g(y) - c_i + c)),
  takes K steps, and updates its control variate by option II of the paper,
  c_i+ = c_i - c + (x - y) / (K lr); it uploads x - y and c_i+ - c_i;
- the server moves x <- x - lr_g mean_i (x - y_i) (SGD at the server learning
  rate; uniform weights, as in the paper) and c <- c + (1/N) sum_i (c_i+ - c_i),
  N the number of training clients.

Local training is the project's client step (experiments.algorithms.client_work)
with the correction added to its gradient, run for the round's clients in one
TFF call; the control-variate arithmetic is numpy, between that call and the
next. Clients whose update is not finite, or who took no step, change nothing.
Uploads are twice FedAvg's (model delta and control-variate delta), so DP,
secure sums and compression, which cover one vector, are refused with it
(experiments.config).
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from experiments.algorithms import client_work
from experiments.algorithms.client_state import ClientStates
from tasks.task import Task


class ScaffoldState(NamedTuple):
    """The server's model and control variate, and the clients' control variates."""

    model: tff.learning.models.ModelWeights  # numpy arrays
    control: list[np.ndarray]
    clients: ClientStates


class RoundOutput(NamedTuple):
    """As TFF's LearningProcessOutput: the new state and the round's measurements."""

    state: ScaffoldState
    metrics: dict


def _arrays(values) -> list[np.ndarray]:
    return [np.asarray(v) for v in values]


class ScaffoldProcess:
    """SCAFFOLD with the learning process interface the federated trainer drives."""

    takes_clients = True  # next() needs the round's global client indices

    def __init__(self, task: Task, seed: int, client_learning_rate: float,
                 server_learning_rate: float, population: int):
        keras_model = task.build_model(seed)
        self._initial = tff.learning.models.ModelWeights(
            trainable=_arrays(keras_model.trainable_weights),
            non_trainable=_arrays(keras_model.non_trainable_weights))
        self._zeros = [np.zeros_like(w) for w in self._initial.trainable]
        self._client_lr = float(client_learning_rate)
        self._server_lr = float(server_learning_rate)
        self._population = int(population)
        self._clients_round = _clients_round(task, seed, self._client_lr)

    @property
    def client_state_bytes(self) -> int:
        """Bytes of one client's control variate."""
        return int(sum(z.nbytes for z in self._zeros))

    def initialize(self) -> ScaffoldState:
        return ScaffoldState(self._initial, list(self._zeros), ClientStates(self._zeros))

    def get_model_weights(self, state: ScaffoldState) -> tff.learning.models.ModelWeights:
        return state.model

    def set_model_weights(self, state: ScaffoldState, weights) -> ScaffoldState:
        model = tff.learning.models.ModelWeights(trainable=_arrays(weights.trainable),
                                                 non_trainable=_arrays(weights.non_trainable))
        return state._replace(model=model)

    def next(self, state: ScaffoldState, datasets: list, clients, round_num: int
             ) -> RoundOutput:
        """One round over `datasets` of the global client indices `clients`."""
        del round_num  # the round's randomness is in its datasets
        x, c = state.model.trainable, state.control
        if not datasets:
            return RoundOutput(state, {})
        own = [state.clients.get(i) for i in clients]
        corrections = [[cs - ci for cs, ci in zip(c, c_i, strict=True)] for c_i in own]
        results, train = self._clients_round([state.model] * len(datasets), corrections,
                                             datasets)
        deltas, control_deltas = [], []
        for client, c_i, (delta, weight, steps) in zip(clients, own, results, strict=True):
            if float(weight) == 0.0 or int(steps) == 0:
                continue  # not finite, or no step taken: this client changes nothing
            delta = _arrays(delta)
            new_c_i = [ci - cs + d / (int(steps) * self._client_lr)
                       for ci, cs, d in zip(c_i, c, delta, strict=True)]
            deltas.append(delta)
            control_deltas.append([n - o for n, o in zip(new_c_i, c_i, strict=True)])
            state.clients.put(client, new_c_i)
        if deltas:
            x = [w - self._server_lr * np.mean(d, axis=0, dtype=np.float64).astype(w.dtype)
                 for w, d in zip(x, zip(*deltas, strict=True), strict=True)]
            c = [cs + (np.sum(d, axis=0, dtype=np.float64) / self._population).astype(cs.dtype)
                 for cs, d in zip(c, zip(*control_deltas, strict=True), strict=True)]
        model = tff.learning.models.ModelWeights(trainable=x,
                                                 non_trainable=state.model.non_trainable)
        return RoundOutput(ScaffoldState(model, c, state.clients),
                           {"client_work": {"train": train}})

    def to_arrays(self, state: ScaffoldState) -> list[np.ndarray]:
        """Model, control variate, then the clients' states (for checkpoints)."""
        return (list(state.model.trainable) + list(state.model.non_trainable)
                + list(state.control) + state.clients.to_arrays())

    def from_arrays(self, arrays: list[np.ndarray]) -> ScaffoldState | None:
        """Inverse of to_arrays; None if the fixed part does not fit this model."""
        nt, nn = len(self._initial.trainable), len(self._initial.non_trainable)
        fixed = list(self._initial.trainable) + list(self._initial.non_trainable) + self._zeros
        head = arrays[:len(fixed)]
        if len(arrays) < len(fixed) + 1 or any(
                np.shape(a) != b.shape for a, b in zip(head, fixed, strict=True)):
            return None
        model = tff.learning.models.ModelWeights(trainable=_arrays(head[:nt]),
                                                 non_trainable=_arrays(head[nt:nt + nn]))
        clients = ClientStates(self._zeros).from_arrays(arrays[len(fixed):])
        return ScaffoldState(model, _arrays(head[nt + nn:]), clients)


def _clients_round(task: Task, seed: int, learning_rate: float) -> tff.Computation:
    """The round's local training in one TFF call: per client (model, correction,
    data) -> (x - y, weight (0 if not finite), steps K), and the summed train metrics."""
    types = client_work.model_types(task, seed)
    names = types.metric_names
    trainable_type = types.weights.trainable

    @tff.tensorflow.computation(types.weights, trainable_type, types.data)
    def client_update(initial, correction, dataset):
        train = client_work.local_training(task, seed, tff.learning.ClientWeighting.UNIFORM,
                                           0.0, names)
        delta, weight, values = train(tf.constant(learning_rate, tf.float32), initial,
                                      dataset, list(correction))
        metrics = collections.OrderedDict(zip(names, values, strict=True))
        return (delta, weight, metrics["num_batches"][0]), metrics

    @tff.federated_computation(tff.FederatedType(types.weights, tff.CLIENTS),
                               tff.FederatedType(trainable_type, tff.CLIENTS),
                               tff.FederatedType(types.data, tff.CLIENTS))
    def clients_round(weights, corrections, data):
        results, metrics = tff.federated_map(client_update, (weights, corrections, data))
        return results, types.aggregate_metrics(metrics)

    client_work.restore_eager_keras(task, seed)
    return clients_round

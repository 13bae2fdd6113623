"""Local layers (FedPer, Arivazhagan et al. 2019): the last layers stay on each client.

The model is split into shared layers, trained federatedly, and the last
`--local_layers` layers with weights, which each client keeps as its own state
(experiments.algorithms.client_state; created from the initial model's on its
first round) and never uploads. A round: each sampled client trains the shared
layers it receives together with its own last layers, by the suite's local
SGD (experiments.algorithms.client_work), keeps the trained last layers, and
uploads only the shared layers' delta; the server moves the shared layers by
SGD at the server learning rate along the clients' mean delta (weighted by
examples for `fedavg`, equally for `fedavg_unweighted`).

The global model therefore has no trained last layers: its `test_*` columns
score the shared layers under the initial head and are not a result. A client
is evaluated with the shared layers and its own last layers (the `personal_*`
columns of experiments.training.personalization).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from experiments.algorithms import client_work
from experiments.algorithms.stateful import RoundOutput, StatefulProcess, StatefulState, arrays
from experiments.core.errors import UsageError
from tasks.task import Task


def local_indices(model: tf.keras.Model, layers: int) -> list[int]:
    """Indices, in the model's trainable weights, of its last `layers` layers with
    weights; UsageError if that leaves no layer to share."""
    weighted = [layer for layer in model.layers if layer.trainable_weights]
    if not 1 <= layers < len(weighted):
        raise UsageError(f"--local_layers={layers} must be in 1..{len(weighted) - 1}: the "
                         f"model has {len(weighted)} layers with weights and at least one "
                         f"must be shared")
    kept = {v.ref() for layer in weighted[-layers:] for v in layer.trainable_weights}
    return [k for k, v in enumerate(model.trainable_weights) if v.ref() in kept]


class LocalLayersProcess(StatefulProcess):
    """FedAvg of the shared layers; each client's last layers are its state."""

    def __init__(self, task: Task, seed: int, client_learning_rate: float,
                 server_learning_rate: float, weighting: tff.learning.ClientWeighting,
                 layers: int):
        model = task.build_model(seed)
        self._local = local_indices(model, layers)
        initial = arrays(model.trainable_weights)
        super().__init__(task, seed, server=[], client=[initial[k] for k in self._local])
        self._server_lr = float(server_learning_rate)
        self._clients_round = client_work.clients_round(task, seed, client_learning_rate,
                                                        weighting)

    def _with_own(self, trainable: list[np.ndarray], own: list[np.ndarray]) -> list:
        merged = list(trainable)
        for k, value in zip(self._local, own, strict=True):
            merged[k] = value
        return merged

    def next(self, state: StatefulState, datasets: list, clients, round_num: int
             ) -> RoundOutput:
        """One round over `datasets` of the global client indices `clients`."""
        del round_num  # the round's randomness is in its datasets
        if not datasets:
            return RoundOutput(state, {})
        own = [state.clients.get(i) for i in clients]
        starts = [tff.learning.models.ModelWeights(
            trainable=self._with_own(state.model.trainable, o),
            non_trainable=state.model.non_trainable) for o in own]
        results, train = self._clients_round(starts, datasets)
        shared = [k for k in range(len(state.model.trainable)) if k not in self._local]
        total, weights = None, 0.0
        for client, mine, (delta, weight, steps) in zip(clients, own, results, strict=True):
            if float(weight) == 0.0 or int(steps) == 0:
                continue  # not finite, or no step taken: this client changes nothing
            delta = arrays(delta)
            state.clients.put(client, [o - delta[k] for o, k in zip(mine, self._local,
                                                                    strict=True)])
            part = [float(weight) * delta[k].astype(np.float64) for k in shared]
            total = part if total is None else [t + p for t, p in zip(total, part,
                                                                      strict=True)]
            weights += float(weight)
        trainable = list(state.model.trainable)
        if total is not None:
            for k, t in zip(shared, total, strict=True):
                trainable[k] = trainable[k] - (self._server_lr * t / weights).astype(
                    trainable[k].dtype)
        model = tff.learning.models.ModelWeights(trainable=trainable,
                                                 non_trainable=state.model.non_trainable)
        return RoundOutput(StatefulState(model, [], state.clients),
                           {"client_work": {"train": train}})

    def personal_weights(self, state: StatefulState) -> dict[int, list[np.ndarray]]:
        """Each client that has trained: the shared layers with its own last layers."""
        return {i: self._with_own(state.model.trainable, state.clients.get(i))
                + list(state.model.non_trainable) for i in state.clients.clients()}

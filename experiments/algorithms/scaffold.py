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

import numpy as np
import tensorflow_federated as tff

from experiments.algorithms import client_work
from experiments.algorithms.stateful import RoundOutput, StatefulProcess, StatefulState, arrays
from tasks.task import Task


class ScaffoldProcess(StatefulProcess):
    """SCAFFOLD: the server array is c, each client's state its c_i."""

    def __init__(self, task: Task, seed: int, client_learning_rate: float,
                 server_learning_rate: float, population: int):
        zeros = [np.zeros(np.shape(w), np.asarray(w).dtype)
                 for w in task.build_model(seed).trainable_weights]
        super().__init__(task, seed, server=zeros, client=zeros)
        self._client_lr = float(client_learning_rate)
        self._server_lr = float(server_learning_rate)
        self._population = int(population)
        self._clients_round = client_work.clients_round(
            task, seed, self._client_lr, tff.learning.ClientWeighting.UNIFORM, corrected=True)

    def next(self, state: StatefulState, datasets: list, clients, round_num: int
             ) -> RoundOutput:
        """One round over `datasets` of the global client indices `clients`."""
        del round_num  # the round's randomness is in its datasets
        x, c = state.model.trainable, state.server
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
            delta = arrays(delta)
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
        return RoundOutput(StatefulState(model, c, state.clients),
                           {"client_work": {"train": train}})

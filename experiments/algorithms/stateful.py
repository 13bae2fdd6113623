"""The learning-process shape of algorithms whose clients keep state between rounds.

SCAFFOLD (control variates) and local layers (each client's own last layers)
run their rounds in Python around one TFF call for the clients' local training
(experiments.algorithms.client_work.clients_round), and keep per-client state in
an experiments.algorithms.client_state.ClientStates. This base class gives them
the interface the federated trainer drives, the same as a TFF learning
process's (initialize, get/set_model_weights, next), plus what a TFF state
would give for free: a checkpoint layout (model, server arrays, client states)
and the per-client state's size for the memory check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import tensorflow_federated as tff

from experiments.algorithms.client_state import ClientStates
from tasks.task import Task


class StatefulState(NamedTuple):
    """The server's model and extra arrays, and the clients' states."""

    model: tff.learning.models.ModelWeights  # numpy arrays
    server: list[np.ndarray]  # e.g. SCAFFOLD's control variate c
    clients: ClientStates


class RoundOutput(NamedTuple):
    """As TFF's LearningProcessOutput: the new state and the round's measurements."""

    state: StatefulState
    metrics: dict


def arrays(values) -> list[np.ndarray]:
    """Numpy copies of tensors or arrays."""
    return [np.asarray(v) for v in values]


class StatefulProcess:
    """Initial state, weights access and checkpoint layout of a stateful algorithm."""

    takes_clients = True  # next() needs the round's global client indices

    def __init__(self, task: Task, seed: int, server: Sequence[np.ndarray],
                 client: Sequence[np.ndarray]):
        """`server`, `client`: the initial server arrays and client state."""
        keras_model = task.build_model(seed)
        self._initial = tff.learning.models.ModelWeights(
            trainable=arrays(keras_model.trainable_weights),
            non_trainable=arrays(keras_model.non_trainable_weights))
        self._server = [np.array(a, copy=True) for a in server]
        self._client = [np.array(a, copy=True) for a in client]

    @property
    def client_state_bytes(self) -> int:
        """Bytes of one client's state."""
        return int(sum(a.nbytes for a in self._client))

    def initialize(self) -> StatefulState:
        return StatefulState(self._initial, list(self._server), ClientStates(self._client))

    def get_model_weights(self, state: StatefulState) -> tff.learning.models.ModelWeights:
        return state.model

    def set_model_weights(self, state: StatefulState, weights) -> StatefulState:
        model = tff.learning.models.ModelWeights(trainable=arrays(weights.trainable),
                                                 non_trainable=arrays(weights.non_trainable))
        return state._replace(model=model)

    def personal_weights(self, state: StatefulState) -> dict[int, list[np.ndarray]]:
        """Each client's own model (trainable, then non-trainable), where it has one."""
        del state
        return {}

    def to_arrays(self, state: StatefulState) -> list[np.ndarray]:
        """Model, server arrays, then the clients' states (for checkpoints)."""
        return (list(state.model.trainable) + list(state.model.non_trainable)
                + list(state.server) + state.clients.to_arrays())

    def from_arrays(self, saved: list[np.ndarray]) -> StatefulState | None:
        """Inverse of to_arrays; None if the fixed part does not fit this model."""
        nt, nn = len(self._initial.trainable), len(self._initial.non_trainable)
        fixed = list(self._initial.trainable) + list(self._initial.non_trainable) + self._server
        head = saved[:len(fixed)]
        if len(saved) < len(fixed) + 1 or any(
                np.shape(a) != b.shape for a, b in zip(head, fixed, strict=True)):
            return None
        model = tff.learning.models.ModelWeights(trainable=arrays(head[:nt]),
                                                 non_trainable=arrays(head[nt:nt + nn]))
        clients = ClientStates(self._client).from_arrays(saved[len(fixed):])
        return StatefulState(model, arrays(head[nt + nn:]), clients)

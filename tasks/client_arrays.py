"""Client data as slices of two arrays: every task's clients, in memory or memory-mapped.

Each client's examples are a contiguous run of rows of one (x, y) pair of
arrays; an offsets array says where each client starts. The arrays may be in
memory or `np.memmap`s of a client store (tasks.client_store): a client's
dataset is then a view of its slice, read from disk when used, so a round
costs memory for its cohort, not for the population.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff


def offsets_of(sizes: Sequence[int]) -> np.ndarray:
    """[0, n0, n0 + n1, ...]: where each client's rows start, and the end."""
    return np.concatenate([[0], np.cumsum(np.asarray(sizes, np.int64))]).astype(np.int64)


class ArrayClientData(tff.simulation.datasets.ClientData):
    """A ClientData whose clients' examples are row slices of (x, y) arrays."""

    def __init__(self, client_ids: Sequence[str], x: np.ndarray, y: np.ndarray,
                 sizes: Sequence[int]):
        self._init(client_ids, x, y, offsets_of(sizes))

    @classmethod
    def from_offsets(cls, client_ids: Sequence[str], x: np.ndarray, y: np.ndarray,
                     offsets: np.ndarray) -> ArrayClientData:
        """Client i holds rows offsets[i]:offsets[i + 1] (a store's layout)."""
        data = cls.__new__(cls)
        data._init(client_ids, x, y, np.asarray(offsets, np.int64))
        return data

    def _init(self, client_ids: Sequence[str], x: np.ndarray, y: np.ndarray,
              offsets: np.ndarray) -> None:
        super().__init__()
        if len(offsets) != len(client_ids) + 1 or offsets[-1] != len(x) or len(x) != len(y):
            raise ValueError(f"{len(client_ids)} clients, {len(offsets)} offsets, "
                             f"{len(x)} x rows and {len(y)} y rows do not agree")
        self._client_ids = list(client_ids)
        self._position = {c: i for i, c in enumerate(self._client_ids)}
        self._x, self._y, self._offsets = x, y, offsets
        self._element_spec = (tf.TensorSpec(x.shape[1:], tf.as_dtype(x.dtype)),
                              tf.TensorSpec(y.shape[1:], tf.as_dtype(y.dtype)))

    @property
    def client_ids(self) -> list[str]:
        return self._client_ids

    @property
    def element_type_structure(self):
        return self._element_spec

    @property
    def serializable_dataset_fn(self):
        raise NotImplementedError(
            "ArrayClientData builds datasets in Python; use create_tf_dataset_for_client")

    def _rows(self, client_id: str) -> slice:
        i = self._position[client_id]
        return slice(int(self._offsets[i]), int(self._offsets[i + 1]))

    def num_examples(self, client_id: str) -> int:
        """How many examples the client holds."""
        rows = self._rows(client_id)
        return rows.stop - rows.start

    def sizes(self) -> np.ndarray:
        """Every client's number of examples, in client order."""
        return np.diff(self._offsets)

    def arrays(self, client_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The client's (x, y) arrays (views, not copies)."""
        rows = self._rows(client_id)
        return self._x[rows], self._y[rows]

    def create_tf_dataset_for_client(self, client_id: str) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(self.arrays(client_id))

    def pooled_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All clients' (x, y) arrays, client after client (views, not copies)."""
        return self._x, self._y

    def create_tf_dataset_from_all_clients(self, seed=None) -> tf.data.Dataset:
        order = np.arange(len(self._client_ids))
        np.random.RandomState(seed=seed).shuffle(order)
        starts, ends = self._offsets[order], self._offsets[order + 1]
        index = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)]
                               or [np.zeros(0, np.int64)])
        return tf.data.Dataset.from_tensor_slices((self._x[index], self._y[index]))

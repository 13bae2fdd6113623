"""TFF's SQLite client data, parsed once into dense arrays held in memory.

TFF's `SqlClientData` answers every `create_tf_dataset_for_client` with an SQL
query on a table that has no index on `client_id`, so each client costs a scan
of the whole file (about 50 ms for FEMNIST-300, far more for full EMNIST or
StackOverflow), inside every round; and each per-client `Dataset.map` (proto
parsing) leaves a traced function behind in TF's eager context, about 1.5 MiB
a round at 10 clients. Here one scan reads a split, one batched pass parses
it with the task's parser and `prepare` turns it into model-ready (x, y)
arrays; a client's dataset is then a slice of those arrays, with no `map`.
Client ids and their order are TFF's.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

Parser = Callable[[tf.Tensor], dict]
# (x, y), or (x, y, source) where source[i] is the index of the parsed record
# that example i came from (non-decreasing): one record may yield many
# examples (a text snippet cut into sequences) or none.
Preparer = Callable[[dict], tuple[np.ndarray, ...]]
_PARSE_BATCH = 4096


class InMemoryClientData(tff.simulation.datasets.ClientData):
    """A ClientData whose clients' examples are (x, y) numpy arrays in memory."""

    def __init__(self, client_ids: list[str], x: np.ndarray, y: np.ndarray,
                 sizes: list[int]):
        super().__init__()
        self._client_ids = list(client_ids)
        self._x, self._y = x, y
        ends = np.cumsum(sizes)
        self._slices = {c: slice(int(e - n), int(e))
                        for c, n, e in zip(self._client_ids, sizes, ends, strict=True)}
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
            "InMemoryClientData builds datasets in Python; use "
            "create_tf_dataset_for_client")

    def num_examples(self, client_id: str) -> int:
        """How many examples the client holds."""
        part = self._slices[client_id]
        return part.stop - part.start

    def arrays(self, client_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The client's (x, y) arrays (views, not copies)."""
        part = self._slices[client_id]
        return self._x[part], self._y[part]

    def create_tf_dataset_for_client(self, client_id: str) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(self.arrays(client_id))

    def pooled_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All clients' (x, y) arrays, client after client (views, not copies)."""
        return self._x, self._y

    def pooled_in_client_order(self) -> tuple[tf.data.Dataset, np.ndarray]:
        """All examples, client after client, and each example's client index."""
        sizes = [self.num_examples(c) for c in self._client_ids]
        owners = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
        return tf.data.Dataset.from_tensor_slices((self._x, self._y)), owners

    def create_tf_dataset_from_all_clients(self, seed=None) -> tf.data.Dataset:
        order = list(self._client_ids)
        np.random.RandomState(seed=seed).shuffle(order)
        index = np.concatenate([np.arange(self._slices[c].start, self._slices[c].stop)
                                for c in order])
        return tf.data.Dataset.from_tensor_slices((self._x[index], self._y[index]))


def create_tables(connection: sqlite3.Connection) -> None:
    """Creates TFF's two SqlClientData tables (for fixtures written in its layout)."""
    connection.execute("CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT "
                       "NOT NULL, serialized_example_proto BLOB NOT NULL)")
    connection.execute("CREATE TABLE client_metadata (client_id TEXT NOT NULL, "
                       "split_name TEXT NOT NULL, num_examples INTEGER NOT NULL)")


def _parse_all(protos: list[bytes], parse: Parser) -> dict[str, np.ndarray]:
    parsed = tf.data.Dataset.from_tensor_slices(np.array(protos, dtype=object)).map(
        parse).batch(_PARSE_BATCH)
    parts = list(parsed.as_numpy_iterator())
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def client_count(path: str, split_name: str) -> int:
    """Clients the file lists for a split (its client_metadata table): what names the
    data set, e.g. the full federated EMNIST (3,400 writers) or a subset of it."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return int(connection.execute(
            "SELECT COUNT(DISTINCT client_id) FROM client_metadata WHERE split_name = ?",
            (split_name,)).fetchone()[0])


def load(path: str, split_name: str, parse: Parser, prepare: Preparer
         ) -> InMemoryClientData | None:
    """One split of a TFF SQLite dataset file, with clients in TFF's order (None if empty).

    `parse` turns one serialized tf.train.Example into a dict of tensors (as
    TFF's own loaders do); `prepare` turns the dict of stacked arrays into the
    model's (x, y) arrays, optionally with each example's source record.
    Clients left without examples are dropped.
    """
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        client_ids = [row[0] for row in connection.execute(
            "SELECT DISTINCT client_id FROM client_metadata WHERE split_name = ?",
            (split_name,))]
        grouped: dict[str, list[bytes]] = defaultdict(list)
        for client_id, proto in connection.execute(
                "SELECT client_id, serialized_example_proto FROM examples "
                "WHERE split_name = ? ORDER BY rowid", (split_name,)):
            grouped[client_id].append(proto)
    client_ids = [c for c in client_ids if grouped.get(c)]
    if not client_ids:
        return None
    protos = [p for c in client_ids for p in grouped[c]]
    prepared = prepare(_parse_all(protos, parse))
    records = np.array([len(grouped[c]) for c in client_ids])
    if len(prepared) == 2:
        x, y = prepared
        sizes = records
    else:
        x, y, source = prepared
        owner = np.repeat(np.arange(len(client_ids)), records)[np.asarray(source, np.int64)]
        sizes = np.bincount(owner, minlength=len(client_ids))
    kept = [i for i, n in enumerate(sizes) if n > 0]
    if not kept:
        return None
    return InMemoryClientData([client_ids[i] for i in kept], x, y,
                              [int(sizes[i]) for i in kept])

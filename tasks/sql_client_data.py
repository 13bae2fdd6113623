"""TFF's SQLite client data files: reading a split, in one piece or as a stream.

TFF's `SqlClientData` answers every `create_tf_dataset_for_client` with an SQL
query on a table that has no index on `client_id`, so each client costs a scan
of the whole file (about 50 ms for FEMNIST-300, far more for full EMNIST or
StackOverflow), inside every round; and each per-client `Dataset.map` (proto
parsing) leaves a traced function behind in TF's eager context, about 1.5 MiB
a round at 10 clients. Here one scan reads a split, one batched pass parses
it with the task's parser and `prepare` turns it into model-ready (x, y)
arrays; a client's dataset is then a slice of those arrays, with no `map`.
Client ids and their order are TFF's.

`load` holds a whole split in memory (`--data_store=memory`); `stream` reads
it in record chunks for the on-disk store (tasks.client_store), which keeps
memory independent of the population.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf

from tasks.client_arrays import ArrayClientData

Parser = Callable[[tf.Tensor], dict]
# (x, y), or (x, y, source) where source[i] is the index of the parsed record
# that example i came from (non-decreasing): one record may yield many
# examples (a text snippet cut into sequences) or none.
Preparer = Callable[[dict], tuple[np.ndarray, ...]]
_PARSE_BATCH = 4096


def create_tables(connection: sqlite3.Connection) -> None:
    """Creates TFF's two SqlClientData tables (for fixtures written in its layout)."""
    connection.execute("CREATE TABLE examples (split_name TEXT NOT NULL, client_id TEXT "
                       "NOT NULL, serialized_example_proto BLOB NOT NULL)")
    connection.execute("CREATE TABLE client_metadata (client_id TEXT NOT NULL, "
                       "split_name TEXT NOT NULL, num_examples INTEGER NOT NULL)")


def parse_all(protos: list[bytes], parse: Parser) -> dict[str, np.ndarray]:
    """Serialized examples to a dict of stacked arrays, `parse` mapped over each."""
    parsed = tf.data.Dataset.from_tensor_slices(np.array(protos, dtype=object)).map(
        parse).batch(_PARSE_BATCH)
    parts = list(parsed.as_numpy_iterator())
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def parse_vectorized(protos: list[bytes], parse: Parser) -> dict[str, np.ndarray]:
    """`parse_all`'s result, with `parse` vectorised over batches (tf.vectorized_map):
    about ten times faster, which the store's conversion of millions of records
    needs (tasks.client_store; its tests hold the two equal on every task's data)."""
    @tf.autograph.experimental.do_not_convert
    def parse_batch(batch: tf.Tensor) -> dict:
        return tf.vectorized_map(parse, batch)

    parsed = tf.data.Dataset.from_tensor_slices(np.array(protos, dtype=object)).batch(
        _PARSE_BATCH).map(parse_batch)
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
         ) -> ArrayClientData | None:
    """One split of a TFF SQLite dataset file, with clients in TFF's order (None if empty).

    `parse` turns one serialized tf.train.Example into a dict of tensors (as
    TFF's own loaders do); `prepare` turns the dict of stacked arrays into the
    model's (x, y) arrays, optionally with each example's source record.
    Clients left without examples are dropped.
    """
    client_ids = split_clients(path, split_name)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        grouped: dict[str, list[bytes]] = defaultdict(list)
        for client_id, proto in connection.execute(
                "SELECT client_id, serialized_example_proto FROM examples "
                "WHERE split_name = ? ORDER BY rowid", (split_name,)):
            grouped[client_id].append(proto)
    client_ids = [c for c in client_ids if grouped.get(c)]
    if not client_ids:
        return None
    protos = [p for c in client_ids for p in grouped[c]]
    prepared = prepare(parse_all(protos, parse))
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
    return ArrayClientData([client_ids[i] for i in kept], x, y,
                              [int(sizes[i]) for i in kept])


def record_count(path: str, split_name: str) -> int:
    """Records the split's client_metadata counts (what a conversion will read)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return int(connection.execute(
            "SELECT COALESCE(SUM(num_examples), 0) FROM client_metadata "
            "WHERE split_name = ?", (split_name,)).fetchone()[0])


def split_clients(path: str, split_name: str) -> list[str]:
    """The split's client ids in TFF's order (its client_metadata table)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return [row[0] for row in connection.execute(
            "SELECT DISTINCT client_id FROM client_metadata WHERE split_name = ?",
            (split_name,))]


def stream(path: str, split_name: str, client_ids: list[str], chunk_records: int
           ) -> Iterator[tuple[np.ndarray, list[bytes]]]:
    """The split's records in file order, `chunk_records` at a time: each chunk's
    owners (positions in `client_ids`) and serialized examples. Records of clients
    not in `client_ids` are skipped, as `load` skips them."""
    position = {c: i for i, c in enumerate(client_ids)}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        cursor = connection.execute(
            "SELECT client_id, serialized_example_proto FROM examples "
            "WHERE split_name = ? ORDER BY rowid", (split_name,))
        while rows := cursor.fetchmany(chunk_records):
            kept = [(position[c], p) for c, p in rows if c in position]
            if kept:
                owners, protos = zip(*kept, strict=True)
                yield np.asarray(owners, np.int64), list(protos)

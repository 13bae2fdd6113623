"""Writes small StackOverflow files in TFF's exact SQLite layout, for tests.

Same tables, columns, split names (`train`, `heldout`, `test`) and
tf.train.Example features (`tokens`, `title`, `tags`, `type` as bytes,
`score` as int64, `creation_date` as bytes) as TFF's `stackoverflow.sqlite`,
so the real loading path is what the tests exercise. Each client writes
about one topic: its sentences repeat the topic's fixed word pattern and its
posts carry the topic's tag, so both next word and tags can be learnt.
"""

from __future__ import annotations

import os
import sqlite3

import numpy as np

from tasks import sql_client_data, stackoverflow

SPLITS = ("train", "heldout", "test")
TOPICS = (
    ("python", "i import numpy as np and call np . array on the list ."),
    ("sql", "select the name from the table where the id is one ."),
    ("git", "you can commit the change and push it to the branch ."),
    ("java", "the class has a public static void main method ."),
)


def write(folder: str, num_clients: int = 8, examples_per_client: tuple[int, int] = (6, 12),
          seed: int = 0) -> str:
    """Creates `<folder>/stackoverflow.sqlite` (no count files); returns its path."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "stackoverflow.sqlite")
    with sqlite3.connect(path) as db:
        sql_client_data.create_tables(db)
        for c in range(num_clients):
            client_id = f"{c + 1:08d}"
            tag, pattern = TOPICS[c % len(TOPICS)]
            splits = ("heldout",) if c == num_clients - 1 else ("train", "test")
            for split in splits:
                n = int(rng.integers(*examples_per_client, endpoint=True))
                count = n if split == "train" else max(2, n // 3)
                for i in range(count):
                    words = pattern.split(" ")
                    start = int(rng.integers(0, 3))
                    tokens = " ".join(words[start:] + [f"rare{c}x{i}"])  # one OOV word
                    tags = f"{tag}|t{c}" if i % 2 else tag
                    db.execute("INSERT INTO examples VALUES (?, ?, ?)", (
                        split, client_id, stackoverflow.example_proto(
                            tokens, f"how to use {tag}", tags, "question" if i == 0
                            else "answer", int(rng.integers(-2, 10)),
                            f"2018-0{1 + i % 9}-1{c % 10} 10:00:00.000 UTC")))
                db.execute("INSERT INTO client_metadata VALUES (?, ?, ?)",
                           (client_id, split, count))
    return path

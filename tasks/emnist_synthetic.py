"""Writes small EMNIST files in TFF's exact SQLite layout, for tests.

Same tables, columns, split names and tf.train.Example features as TFF's
`emnist_all.sqlite`, so the real loading path is what the tests exercise.
Each client's images are class templates plus noise, so a model can learn.
"""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import tensorflow as tf

from tasks import sql_client_data

SPLITS = ("all_train", "all_test", "digits_only_train", "digits_only_test")


def _example(pixels: np.ndarray, label: int) -> bytes:
    features = {
        "pixels": tf.train.Feature(float_list=tf.train.FloatList(value=pixels.ravel())),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(
        features=tf.train.Features(feature=features)).SerializeToString()


def write(folder: str, num_clients: int = 6, examples_per_client: tuple[int, int] = (8, 16),
          num_classes: int = 62, seed: int = 0) -> str:
    """Creates `<folder>/emnist_all.sqlite`; returns its path."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0.0, 1.0, size=(num_classes, 28, 28)).astype(np.float32)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "emnist_all.sqlite")
    with sqlite3.connect(path) as db:
        sql_client_data.create_tables(db)
        for c in range(num_clients):
            client_id = f"f{c:04d}_{c % 100:02d}"
            n = int(rng.integers(examples_per_client[0], examples_per_client[1] + 1))
            for split in SPLITS:
                classes = 10 if split.startswith("digits") else num_classes
                count = n if split.endswith("train") else max(2, n // 4)
                labels = rng.integers(0, classes, size=count)
                for label in labels:
                    noise = rng.normal(0, 0.1, size=(28, 28)).astype(np.float32)
                    pixels = np.clip(templates[label] + noise, 0.0, 1.0)
                    db.execute("INSERT INTO examples VALUES (?, ?, ?)",
                               (split, client_id, _example(pixels, int(label))))
                db.execute("INSERT INTO client_metadata VALUES (?, ?, ?)",
                           (client_id, split, count))
    return path

"""The synthetic StackOverflow population: TFF's layout, the stated sizes, named as synthetic."""

from __future__ import annotations

import sqlite3

import numpy as np

from tasks import stackoverflow, stackoverflow_synthetic, stackoverflow_word
from tasks.settings import TaskConfig


def _settings(clients: int) -> dict:
    return {"clients": clients, "mean_sentences": 120.0, "min_sentences": 100,
            "spread": 1.0, "vocab": 200, "tags": 20, "seed": 3}


def test_sizes_have_the_stated_minimum_and_mean() -> None:
    rng = np.random.default_rng(0)
    drawn = stackoverflow_synthetic.sizes(200_000, 396.6, 100, 1.0, rng)
    assert drawn.min() >= 100
    assert abs(drawn.mean() - 396.6) < 3  # log-normal tail: standard error ~1.4
    assert np.percentile(drawn, 99) > 3 * np.median(drawn)  # heavy-tailed


def test_the_file_loads_as_stackoverflow_and_says_it_is_synthetic(tmp_path) -> None:
    path = stackoverflow_synthetic.write(str(tmp_path), _settings(30))
    with sqlite3.connect(path) as db:
        counts = dict(db.execute("SELECT split_name, COUNT(DISTINCT client_id) FROM "
                                 "client_metadata GROUP BY split_name"))
        train_sizes = [n for (n,) in db.execute(
            "SELECT num_examples FROM client_metadata WHERE split_name = 'train'")]
    assert counts["train"] == 30 and 0 < counts["test"] <= 30
    assert min(train_sizes) >= 100
    assert stackoverflow.data_name(path).startswith("synthetic StackOverflow layout (30 users")
    task = stackoverflow_word.build_task(TaskConfig(data_dir=str(tmp_path), vocab_size=100))
    assert task.description.startswith("synthetic StackOverflow layout")
    assert len(task.train_data.client_ids) == 30
    x, y = task.train_data.arrays(task.train_data.client_ids[0])
    assert x.shape[0] == train_sizes[0] and (x > 0).any()  # real word ids, not all padding

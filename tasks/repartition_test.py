"""--partition on a real task: clients re-split, test clients matched, pooled test unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.core.errors import UsageError
from tasks import registry, repartition
from tasks.client_arrays import ArrayClientData
from tasks.settings import TaskConfig
from tasks.task import Task


def _pooled(data) -> tuple[np.ndarray, np.ndarray]:
    x, y = data.pooled_arrays()
    order = np.lexsort((y, x.reshape(len(x), -1).sum(axis=1)))
    return x[order], y[order]


@pytest.mark.parametrize("settings", [
    dict(partition="iid", partition_clients=4),
    dict(partition="shards", partition_clients=4, shards_per_client=2),
    dict(partition="dirichlet", partition_clients=3, dirichlet_alpha=0.1),
    dict(partition="quantity_skew", partition_clients=4, quantity_sigma=1.0),
])
def test_partition_keeps_every_example_and_the_pooled_test_set(emnist_dir, settings):
    natural = registry.get("emnist_character", TaskConfig(data_dir=emnist_dir))
    task = registry.get("emnist_character", TaskConfig(data_dir=emnist_dir, **settings))
    assert len(task.train_data.client_ids) == settings["partition_clients"]
    assert len(task.test_data.client_ids) == settings["partition_clients"]
    for split in ("train_data", "test_data"):
        for a, b in zip(_pooled(getattr(natural, split)), _pooled(getattr(task, split)),
                        strict=True):
            np.testing.assert_array_equal(a, b)
    summary = task.data_summary()["partition"]
    assert summary["name"] == settings["partition"]
    assert summary["clients"] == settings["partition_clients"]
    again = registry.get("emnist_character", TaskConfig(data_dir=emnist_dir, **settings))
    assert all(np.array_equal(task.train_data.arrays(c)[1], again.train_data.arrays(c)[1])
               for c in task.train_data.client_ids)  # deterministic from the seed


def _sequence_task() -> Task:
    """A task whose targets are token sequences: no label per example."""
    x = np.arange(60, dtype=np.int32).reshape(20, 3)
    y = np.arange(80, dtype=np.int32).reshape(20, 4)
    data = ArrayClientData(["a", "b"], x, y, [12, 8])
    return Task(name="sequences", config=TaskConfig(), train_data=data, test_data=data,
                build_model=lambda seed: None)


def test_label_partitions_are_refused_without_labels_and_iid_works():
    task = _sequence_task()
    with pytest.raises(UsageError, match="--partition=shards needs one label per example"):
        repartition.apply(task, TaskConfig(partition="shards", partition_clients=2))
    split = repartition.apply(task, TaskConfig(partition="iid", partition_clients=4))
    assert [split.train_data.num_examples(c) for c in split.train_data.client_ids] == [5] * 4
    assert split.data_summary()["partition"]["clients"] == 4
    assert "labels_per_client_mean" not in split.data_summary()["partition"]

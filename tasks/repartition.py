"""A task's training clients split anew (`--partition`), its test clients to match.

The training examples of every client are pooled and dealt out by
`tasks.partition`; the test examples are pooled too and dealt out so each
client's test labels follow its training labels (IID for tasks without a
label), so federated evaluation sees the same heterogeneity. The pooled test
set, and so centralised evaluation, is unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments.core.errors import UsageError
from tasks import partition
from tasks.client_arrays import ArrayClientData
from tasks.settings import TaskConfig
from tasks.task import Task

_LABELLED = ("shards", "dirichlet")


def _labels(y: np.ndarray) -> np.ndarray | None:
    """One integer label per example, or None (sequences, multi-label targets)."""
    y = np.asarray(y)
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        return y
    if y.ndim == 2 and y.shape[1] == 1 and np.issubdtype(y.dtype, np.integer):
        return y[:, 0]
    return None


def _train_parts(config: TaskConfig, labels: np.ndarray | None, examples: int
                 ) -> list[np.ndarray]:
    n, seed = config.partition_clients, config.seed
    if config.partition == "iid":
        return partition.iid(examples, n, seed)
    if config.partition == "quantity_skew":
        return partition.quantity_skew(examples, n, config.quantity_sigma, seed)
    if config.partition == "shards":
        return partition.shards(labels, n, config.shards_per_client, seed)
    return partition.dirichlet(labels, n, config.dirichlet_alpha, seed)


def _client_data(prefix: str, x: np.ndarray, y: np.ndarray, parts: list[np.ndarray]
                 ) -> ArrayClientData:
    order = np.concatenate(parts)
    ids = [f"{prefix}{i:05d}" for i in range(len(parts))]
    return ArrayClientData(ids, x[order], y[order], [p.size for p in parts])


def apply(task: Task, config: TaskConfig) -> Task:
    """`task` with its clients split by `config.partition` (unchanged for natural),
    deterministically from `config.seed`."""
    if config.partition == "natural":
        return task
    x, y = task.train_data.pooled_arrays()
    labels = _labels(y)
    if config.partition in _LABELLED and labels is None:
        raise UsageError(f"--partition={config.partition} needs one label per example; "
                         f"--task={task.name} has none (use --partition=iid or "
                         f"quantity_skew)")
    parts = _train_parts(config, labels, len(y))
    test_x, test_y = task.test_data.pooled_arrays()
    test_labels = _labels(test_y)
    if labels is not None and test_labels is not None:
        test_parts = partition.like(parts, labels, test_labels, config.seed)
    else:
        test_parts = partition.iid(len(test_y), len(parts), config.seed)
    return dataclasses.replace(
        task, train_data=_client_data("p", x, y, parts),
        test_data=_client_data("p", test_x, test_y, test_parts),
        partition={"name": config.partition, **partition.summary(parts, labels)})

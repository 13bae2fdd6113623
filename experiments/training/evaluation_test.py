"""The evaluator's naive baseline against numpy, and its reading of the store in place."""

from __future__ import annotations

import numpy as np

from experiments.training import evaluation
from tasks import registry
from tasks.settings import TaskConfig


def test_naive_accuracy_is_the_majority_training_label_on_the_test_split(emnist_dir: str
                                                                       ) -> None:
    task = registry.get("emnist_character", TaskConfig(data_dir=emnist_dir, model="2nn"))
    train_y = np.concatenate([task.train_data.arrays(c)[1]
                              for c in task.train_data.client_ids])
    test_y = np.concatenate([task.test_data.arrays(c)[1] for c in task.test_data.client_ids])
    majority = np.bincount(train_y).argmax()
    evaluator = evaluation.Evaluator(task, seed=0)
    assert evaluator.naive == np.mean(test_y == majority)
    # The store's memory-mapped test rows are scored in place, not copied.
    x, y, owners = evaluation._collect(task)
    assert isinstance(x.base, np.memmap) and isinstance(y.base, np.memmap)
    assert np.array_equal(np.bincount(owners), task.test_data.sizes())

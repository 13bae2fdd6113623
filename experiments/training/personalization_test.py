"""Tests of personalisation evaluation against an independent numpy fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.training import personalization
from experiments.training.settings import PersonalizationSettings
from tasks import registry
from tasks.scoring import Scoring
from tasks.settings import TaskConfig


def test_batch_indices_cycle_through_seeded_permutations():
    steps = personalization.batch_indices(7, steps=5, batch=3, seed=0, client=2)
    assert [len(s) for s in steps] == [3] * 5
    flat = np.concatenate(steps)
    assert sorted(flat[:7]) == list(range(7))  # one full pass before any repeat
    assert np.array_equal(flat, np.concatenate(
        personalization.batch_indices(7, 5, 3, seed=0, client=2)))
    small = personalization.batch_indices(2, steps=3, batch=20, seed=0, client=0)
    assert [sorted(s) for s in small] == [[0, 1]] * 3


def test_columns_only_when_enabled():
    assert personalization.columns(0, Scoring()) == ()
    cols = personalization.columns(5, Scoring())
    assert cols[0] == "personal_clients" and "personal_accuracy_after_p90" in cols
    assert len(cols) == 9


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def test_fine_tuning_matches_numpy_sgd(emnist_dir):
    task = registry.get("emnist_character", TaskConfig(data_dir=emnist_dir, model="logistic"))
    steps, batch, lr = 4, 5, 0.5
    personalizer = personalization.Personalizer(task, steps, batch, lr, seed=0)
    assert personalizer.clients == task.test_data.client_ids  # same writers in both splits
    rng = np.random.default_rng(1)
    kernel = rng.normal(0, 0.05, (784, 62)).astype(np.float32)
    bias = np.zeros(62, np.float32)
    records = personalizer.client_scores([kernel, bias])
    for index, record in enumerate(records):
        client = record["client_id"]
        train_x, train_y = task.train_data.arrays(client)
        test_x, test_y = task.test_data.arrays(client)
        w, b = kernel.astype(np.float64), bias.astype(np.float64)
        accuracy = np.mean(np.argmax(test_x.reshape(len(test_y), -1) @ w + b, -1) == test_y)
        assert record["before"] == pytest.approx(accuracy)
        for idx in personalization.batch_indices(len(train_y), steps, batch, 0, index):
            x = train_x[idx].reshape(len(idx), -1).astype(np.float64)
            p = _softmax(x @ w + b)
            p[np.arange(len(idx)), train_y[idx]] -= 1
            w, b = w - lr * x.T @ p / len(idx), b - lr * p.mean(0)
        accuracy = np.mean(np.argmax(test_x.reshape(len(test_y), -1) @ w + b, -1) == test_y)
        assert record["after"] == pytest.approx(accuracy)
    row = personalizer.row(records)
    after = np.array([r["after"] for r in records])
    assert row["personal_accuracy_after_mean"] == pytest.approx(after.mean())
    assert row["personal_accuracy_after_p50"] == pytest.approx(np.median(after))
    assert row["personal_clients"] == len(records)


def test_fine_tuning_rate_has_its_own_flag_defaulting_to_the_client_rate():
    base = PersonalizationSettings()
    assert personalization.fine_tuning_rate(base, client_learning_rate=0.1) == 0.1
    own = PersonalizationSettings(personalization_learning_rate=0.02)
    assert personalization.fine_tuning_rate(own, client_learning_rate=0.1) == 0.02

"""Partitions: sizes, disjoint cover, labels per client, Dirichlet skew against its alpha."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.core.errors import UsageError
from tasks import partition

LABELS = np.repeat(np.arange(10), 60)  # 600 examples, 10 balanced labels


def _is_cover(parts: list[np.ndarray], n: int) -> bool:
    joined = np.concatenate(parts)
    return joined.size == n and np.array_equal(np.sort(joined), np.arange(n))


def test_iid_clients_are_equal_disjoint_and_deterministic():
    parts = partition.iid(600, 7, seed=3)
    assert _is_cover(parts, 600)
    assert {p.size for p in parts} == {85, 86}
    again = partition.iid(600, 7, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = partition.iid(600, 7, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_shards_give_each_client_at_most_its_shards_labels():
    parts = partition.shards(LABELS, clients=30, per_client=2, seed=0)
    assert _is_cover(parts, 600)
    assert {p.size for p in parts} == {20}  # 60 shards of 10
    labels_per_client = [np.unique(LABELS[p]).size for p in parts]
    # 60-example labels cut into 10-example shards: every shard holds one label.
    assert max(labels_per_client) <= 2 and np.mean(labels_per_client) > 1.5
    iid_labels = [np.unique(LABELS[p]).size for p in partition.iid(600, 30, seed=0)]
    assert np.mean(iid_labels) > 7  # the control: an IID client of 20 sees most labels


def test_dirichlet_shares_follow_alpha_over_many_draws():
    # Dirichlet(alpha 1_K): each share has mean 1/K and variance (1/K)(1 - 1/K)/(K alpha + 1).
    clients, alpha, draws = 5, 0.5, 200
    labels = np.repeat(np.arange(4), 1000)
    shares = []
    for seed in range(draws):
        parts = partition.dirichlet(labels, clients, alpha, seed)
        assert _is_cover(parts, labels.size)
        for label in range(4):
            counts = np.array([np.sum(labels[p] == label) for p in parts])
            shares.append(counts / 1000)
    shares = np.array(shares)  # (draws x labels) x clients
    k = clients
    expected_var = (1 / k) * (1 - 1 / k) / (k * alpha + 1)
    assert np.allclose(shares.mean(axis=0), 1 / k, atol=0.03)
    assert shares.var() == pytest.approx(expected_var, rel=0.15)
    # Control: a much larger alpha gives a much smaller variance (close to IID).
    flat = np.array([[np.sum(labels[p] == 0) / 1000 for p in
                      partition.dirichlet(labels, clients, 100.0, seed)]
                     for seed in range(50)])
    assert flat.var() < 0.05 * expected_var


def test_dirichlet_small_alpha_concentrates_labels_and_no_client_is_empty():
    parts = partition.dirichlet(LABELS, 20, 0.01, seed=1)
    assert _is_cover(parts, 600) and min(p.size for p in parts) >= 1
    assert np.mean([np.unique(LABELS[p]).size for p in parts]) < 2


def test_quantity_skew_sizes_spread_with_sigma():
    equal = partition.quantity_skew(600, 10, 0.0, seed=0)
    assert _is_cover(equal, 600) and {p.size for p in equal} == {60}
    skewed = partition.quantity_skew(600, 10, 2.0, seed=0)
    assert _is_cover(skewed, 600) and min(p.size for p in skewed) >= 1
    assert max(p.size for p in skewed) > 3 * min(p.size for p in skewed)


def test_test_split_follows_each_clients_training_labels():
    train = partition.shards(LABELS, clients=10, per_client=1, seed=2)  # one label each
    test_labels = np.repeat(np.arange(10), 7)
    test = partition.like(train, LABELS, test_labels, seed=2)
    assert _is_cover(test, test_labels.size)
    for train_part, test_part in zip(train, test, strict=True):
        assert set(test_labels[test_part]) == set(LABELS[train_part])


def test_summary_counts_clients_sizes_and_labels():
    parts = partition.shards(LABELS, clients=30, per_client=2, seed=0)
    summary = partition.summary(parts, LABELS)
    assert summary["clients"] == 30 and summary["examples"] == 600
    assert summary["size_min"] == summary["size_max"] == 20
    assert 1.5 < summary["labels_per_client_mean"] <= 2


@pytest.mark.parametrize("call, message", [
    (lambda: partition.shards(LABELS, 400, 2, 0), "800 shards, more than the 600"),
    (lambda: partition.dirichlet(LABELS, 10, 0.0, 0), "--dirichlet_alpha=0.0 must be > 0"),
    (lambda: partition.iid(10, 11, 0), "--partition_clients=11 exceeds the 10"),
    (lambda: partition.quantity_skew(10, 2, -1.0, 0), "--quantity_sigma=-1.0 must be"),
])
def test_impossible_requests_are_one_line(call, message):
    with pytest.raises(UsageError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)

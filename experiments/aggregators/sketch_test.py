"""Count sketches: linearity, shared hashes, exact and approximate unsketching.

Every number is checked against an independent numpy count sketch built from
the hashes exported as arrays (`np.add.at` into the table, `np.median` over the
rows' signed reads, `np.argsort` for the top-k); the estimator's error against
the count sketch's bound ||x_tail||_2 / sqrt(C) per row.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from experiments.aggregators import compression as c
from experiments.aggregators import fetchsgd, sketch


def _hashes(n: int, rows: int, width: int, seed=(3, 4)) -> tuple[np.ndarray, np.ndarray]:
    buckets, signs = sketch.hashes(n, rows, width, tf.constant(seed, tf.int64))
    return buckets.numpy(), signs.numpy()


def numpy_sketch(x: np.ndarray, buckets: np.ndarray, signs: np.ndarray, width: int
                 ) -> np.ndarray:
    """The [rows, width] count sketch, in float64."""
    table = np.zeros((buckets.shape[0], width))
    for r in range(buckets.shape[0]):
        np.add.at(table[r], buckets[r], signs[r] * x)
    return table


def numpy_estimate(table: np.ndarray, buckets: np.ndarray, signs: np.ndarray) -> np.ndarray:
    rows = np.arange(buckets.shape[0])[:, None]
    return np.median(signs * table[rows, buckets], axis=0)


def numpy_unsketch(table, buckets, signs, k: int) -> np.ndarray:
    values = numpy_estimate(table, buckets, signs)
    out = np.zeros_like(values)
    top = np.argsort(-np.abs(values), kind="stable")[:k]
    out[top] = values[top]
    return out


def test_the_hashes_are_buckets_and_signs_and_the_table_matches_numpy() -> None:
    n, rows, width = 500, 5, 40
    buckets, signs = _hashes(n, rows, width)
    assert buckets.shape == signs.shape == (rows, n)
    assert buckets.min() == 0 and buckets.max() == width - 1
    assert set(np.unique(signs)) == {-1.0, 1.0}
    assert abs(signs.mean()) < 0.1  # fair coins
    assert all(len(set(buckets[r])) == width for r in range(rows))  # every bucket used
    assert not np.array_equal(buckets[0], buckets[1])  # rows hash independently
    x = np.random.default_rng(0).normal(size=n).astype(np.float32)
    table = sketch.sketch(tf.constant(x), tf.constant(buckets), tf.constant(signs), width)
    np.testing.assert_allclose(table.numpy(), numpy_sketch(x, buckets, signs, width),
                               atol=1e-4)


def test_the_sum_of_the_clients_sketches_is_the_sketch_of_the_sum() -> None:
    """What the clients encode: one table per tensor under hashes every client shares."""
    method = c.Method("fetchsgd", sketch_rows=5, sketch_columns_fraction=0.25)
    rng = np.random.default_rng(1)
    shapes = [(20, 6), (6,), (3, 3, 2, 5)]
    clients = [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(4)]
    tables = [[f["table"].numpy() for f in fetchsgd.encode(
        method, [tf.constant(t) for t in client], experiment_seed=9)["tensors"]]
        for client in clients]
    total = [np.sum([client[i] for client in clients], axis=0) for i in range(3)]
    summed = fetchsgd.encode(method, [tf.constant(t) for t in total], experiment_seed=9)
    for i, shape in enumerate(shapes):
        got = np.sum([t[i] for t in tables], axis=0)
        np.testing.assert_allclose(got, summed["tensors"][i]["table"].numpy(), atol=1e-4)
        buckets, signs, width = (np.asarray(a) for a in fetchsgd.tensor_hashes(
            method, int(np.prod(shape)), i, 9))
        assert got.shape == (5, int(width))
        np.testing.assert_allclose(got, numpy_sketch(total[i].ravel(), buckets, signs,
                                                     int(width)), atol=1e-4)


def test_the_hashes_follow_the_experiment_seed_and_tensor_only() -> None:
    method = c.Method("fetchsgd", sketch_rows=3, sketch_columns_fraction=0.1)
    first = [a.numpy() for a in fetchsgd.tensor_hashes(method, 300, 0, 5)[:2]]
    again = [a.numpy() for a in fetchsgd.tensor_hashes(method, 300, 0, 5)[:2]]
    other_seed = fetchsgd.tensor_hashes(method, 300, 0, 6)[0].numpy()
    other_tensor = fetchsgd.tensor_hashes(method, 300, 1, 5)[0].numpy()
    np.testing.assert_array_equal(first[0], again[0])  # every client, every round
    np.testing.assert_array_equal(first[1], again[1])
    assert np.mean(first[0] == other_seed) < 0.2  # about 1 / C by chance
    assert np.mean(first[0] == other_tensor) < 0.2


def test_a_sparse_vector_is_recovered_exactly_from_a_large_sketch() -> None:
    n, rows, k = 1000, 5, 10
    buckets, signs = _hashes(n, rows, n)  # C = n
    rng = np.random.default_rng(2)
    x = np.zeros(n, np.float32)
    x[rng.choice(n, k, replace=False)] = rng.normal(size=k) * 5
    table = sketch.sketch(tf.constant(x), tf.constant(buckets), tf.constant(signs), n)
    out = sketch.unsketch(table, tf.constant(buckets), tf.constant(signs), k).numpy()
    np.testing.assert_allclose(out, x, atol=1e-6)
    np.testing.assert_allclose(out, numpy_unsketch(numpy_sketch(x, buckets, signs, n),
                                                   buckets, signs, k), atol=1e-6)


@pytest.mark.parametrize("rows", [5, 4])  # odd, and even (the mean of the middle two)
def test_median_estimates_match_numpy_and_the_count_sketch_bound(rows: int) -> None:
    n, width, heavy = 10_000, 100, 1234
    buckets, signs = _hashes(n, rows, width, seed=(7, rows))
    rng = np.random.default_rng(3)
    x = (rng.normal(size=n) * 0.01).astype(np.float32)
    x[heavy] = 10.0
    table = sketch.sketch(tf.constant(x), tf.constant(buckets), tf.constant(signs), width)
    estimate = sketch.estimate(table, tf.constant(buckets), tf.constant(signs)).numpy()
    reference = numpy_estimate(numpy_sketch(x, buckets, signs, width), buckets, signs)
    np.testing.assert_allclose(estimate, reference, atol=1e-4)
    # One row's read of j is x_j plus the signed sum of the values sharing its bucket:
    # standard deviation ||x_tail|| / sqrt(C) (0.1 here); the median keeps it there.
    bound = 3 * np.linalg.norm(np.delete(x, heavy)) / np.sqrt(width)
    assert abs(estimate[heavy] - 10.0) <= bound
    assert np.mean(np.abs(estimate - x) <= bound) > 0.99
    # The estimate is noisy (the check has power): a single bucket read is not exact.
    assert np.abs(estimate - x).max() > 0.1 * bound
    # The k = 1 unsketch finds the heavy hitter and keeps its estimate.
    out = sketch.unsketch(table, tf.constant(buckets), tf.constant(signs), 1).numpy()
    assert np.flatnonzero(out).tolist() == [heavy] and out[heavy] == estimate[heavy]


def test_sizes_follow_the_fractions() -> None:
    assert [sketch.columns(n, 0.1) for n in (1, 5, 6, 62, 48_608)] == [1, 1, 1, 6, 4861]
    assert [sketch.top_k(n, 0.01) for n in (1, 62, 100, 101, 48_608)] == [1, 1, 1, 2, 487]
    assert sketch.top_k(10, 1.0) == 10

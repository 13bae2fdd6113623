"""Count sketches with R rows (Charikar et al. 2002) and their top-k unsketching.

The math of `--compression=fetchsgd` (experiments.aggregators.fetchsgd), as pure
TensorFlow functions of a flat vector, a sketch table and the hashes:

* `hashes(n, rows, columns, seed)`: for each row r and coordinate j a bucket
  h_r(j) in [0, columns) and a sign s_r(j) in {-1, +1}, drawn from a stateless
  seed (a fully random table per row, not a 2-wise family: the seed is the
  hash function). The same seed gives the same hashes on every machine.
* `sketch(x, buckets, signs, columns)`: the [rows, columns] table
  S[r, c] = sum over j with h_r(j) = c of s_r(j) x_j. Linear in x: the sum of
  sketches under the same hashes is the sketch of the sum.
* `estimate(table, buckets, signs)`: each coordinate's estimate, the median
  over rows of s_r(j) S[r, h_r(j)] (numpy's median: the mean of the two middle
  values for an even number of rows). For one row it is the unbiased
  single-bucket read of the `sketch:F` pipeline stage.
* `unsketch(table, buckets, signs, k)`: the dense vector holding the k
  estimates of largest magnitude at their coordinates, zeros elsewhere.

Sizes: `columns(n, fraction)` = max(1, round(fraction n)) and
`top_k(n, fraction)` = max(1, ceil(fraction n)), as the pipeline's `sketch:F`
and `topk:F` stages count theirs.
"""

from __future__ import annotations

import math

import tensorflow as tf


def columns(n: int, fraction: float) -> int:
    """Columns of the sketch of an n-value tensor: max(1, round(fraction n))."""
    return max(1, round(fraction * n))


def top_k(n: int, fraction: float) -> int:
    """Coordinates the unsketching keeps of an n-value tensor: max(1, ceil(fraction n))."""
    return max(1, min(n, math.ceil(fraction * n)))


def hashes(n: int, rows: int, width: int, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Buckets [rows, n] (int32 in [0, width)) and signs [rows, n] (float32 +-1)."""
    buckets = tf.random.stateless_uniform([rows, n], seed=seed, maxval=width,
                                          dtype=tf.int32)
    coin = tf.random.stateless_uniform(
        [rows, n], seed=tf.random.experimental.stateless_fold_in(seed, 1))
    return buckets, tf.where(coin < 0.5, -1.0, 1.0)


def sketch(x: tf.Tensor, buckets: tf.Tensor, signs: tf.Tensor, width: int) -> tf.Tensor:
    """The [rows, width] count sketch of the flat vector x under these hashes."""
    rows = buckets.shape[0]
    cells = buckets + width * tf.range(rows, dtype=tf.int32)[:, None]
    table = tf.math.unsorted_segment_sum(signs * x[None, :], cells, rows * width)
    return tf.reshape(table, [rows, width])


def estimate(table: tf.Tensor, buckets: tf.Tensor, signs: tf.Tensor) -> tf.Tensor:
    """Each coordinate's estimate: the median over rows of s_r(j) S[r, h_r(j)]."""
    reads = tf.sort(signs * tf.gather(table, buckets, batch_dims=1), axis=0)
    rows = reads.shape[0]
    middle = rows // 2
    if rows % 2:
        return reads[middle]
    return (reads[middle - 1] + reads[middle]) / 2.0


def unsketch(table: tf.Tensor, buckets: tf.Tensor, signs: tf.Tensor, k: int) -> tf.Tensor:
    """The dense flat vector of the k largest-magnitude estimates (zeros elsewhere)."""
    values = estimate(table, buckets, signs)
    n = values.shape[0]
    top = tf.math.top_k(tf.abs(values), k=k, sorted=False).indices
    return tf.scatter_nd(top[:, None], tf.gather(values, top), [n])

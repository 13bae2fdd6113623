"""Robust model aggregators: coordinate-wise median, trimmed mean, norm clipping.

A few outlier clients can drag a plain mean anywhere; these aggregators bound
their pull (Yin et al. 2018 for the coordinate-wise median and trimmed mean).
Median and trimmed mean need every client's value at once: each client's
update is flattened to one row and the rows are stacked with
`tff.federated_aggregate` (TFF 0.87 has no `federated_collect`), so the server
holds an n x d matrix for a moment; the statistic is taken per coordinate.
They ignore example weights (`--algorithm=fedavg_unweighted`). `norm_clip`
is TFF's `clipping_factory` (each update scaled down to L2 norm <= the bound)
around the mean.

`factory` also maps the secure choices of `--aggregator`: `tff_secure` is
TFF's own `tff.learning.secure_aggregator` (its `federated_secure_sum_bitwidth`
runs insecurely compiled, as in TFF's test context; see experiments.core.tff_worker),
and `secure_sum` is our simulation, which runs outside TFF's aggregator
(experiments.algorithms.split_round) and so needs no factory here.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from experiments.aggregators.settings import AggregatorSettings


def _leaves(value) -> list:
    if isinstance(value, tff.structure.Struct):
        return tff.structure.flatten(value)
    return tf.nest.flatten(value)


def _statistic(stacked: tf.Tensor, kind: str, fraction: float) -> tf.Tensor:
    """Per-column median or trimmed mean of an [n, d] matrix (numpy's definitions)."""
    ordered = tf.sort(stacked, axis=0)
    n = tf.shape(ordered)[0]
    if kind == "median":
        low, high = (n - 1) // 2, n // 2
        return (ordered[low] + ordered[high]) / 2.0
    cut = tf.cast(tf.math.floor(fraction * tf.cast(n, tf.float64)), tf.int32)
    return tf.reduce_mean(ordered[cut:n - cut], axis=0)


class CoordinateWiseFactory(tff.aggregators.UnweightedAggregationFactory):
    """Coordinate-wise median (`kind="median"`) or trimmed mean (`"trimmed_mean"`,
    dropping floor(fraction * n) values at each end, as scipy.stats.trim_mean)."""

    def __init__(self, kind: str, fraction: float = 0.0):
        if kind not in ("median", "trimmed_mean"):
            raise ValueError(f"unknown coordinate-wise statistic {kind}")
        self._kind, self._fraction = kind, float(fraction)

    def create(self, value_type) -> tff.templates.AggregationProcess:
        specs = [(t.shape, t.dtype) for t in tff.structure.flatten(value_type)]
        sizes = [int(np.prod(shape)) for shape, _ in specs]
        d = sum(sizes)
        row_type = tff.TensorType(np.float32, [1, d])
        matrix_type = tff.TensorType(np.float32, [None, d])
        kind, fraction = self._kind, self._fraction

        @tff.tensorflow.computation(value_type)
        def to_row(value):
            flat = [tf.reshape(tf.cast(t, tf.float32), [-1]) for t in _leaves(value)]
            return tf.expand_dims(tf.concat(flat, axis=0), 0)

        @tff.tensorflow.computation()
        def empty():
            return tf.zeros([0, d], tf.float32)

        @tff.tensorflow.computation(matrix_type, row_type)
        def accumulate(matrix, row):
            return tf.concat([matrix, row], axis=0)

        @tff.tensorflow.computation(matrix_type, matrix_type)
        def merge(a, b):
            return tf.concat([a, b], axis=0)

        @tff.tensorflow.computation(matrix_type)
        def report(matrix):
            stat = _statistic(matrix, kind, fraction)
            parts = tf.split(stat, sizes)
            leaves = [tf.cast(tf.reshape(p, shape), dtype)
                      for p, (shape, dtype) in zip(parts, specs, strict=True)]
            return tff.types.type_to_py_container(
                tff.structure.pack_sequence_as(value_type, leaves), value_type)

        @tff.federated_computation()
        def init_fn():
            return tff.federated_value((), tff.SERVER)

        @tff.federated_computation(init_fn.type_signature.result,
                                   tff.FederatedType(value_type, tff.CLIENTS))
        def next_fn(state, value):
            rows = tff.federated_map(to_row, value)
            result = tff.federated_aggregate(rows, empty(), accumulate, merge, report)
            return tff.templates.MeasuredProcessOutput(
                state=state, result=result, measurements=tff.federated_value((), tff.SERVER))

        return tff.templates.AggregationProcess(init_fn, next_fn)


def factory(settings: AggregatorSettings, weighted: bool):
    """The aggregation factory of `--aggregator` (None: TFF's default mean, which
    `secure_sum` also leaves in place inside TFF); `weighted`: example-weighted."""
    name = settings.aggregator
    if name in ("mean", "secure_sum"):
        return None
    if name == "median":
        return CoordinateWiseFactory("median")
    if name == "trimmed_mean":
        return CoordinateWiseFactory("trimmed_mean", settings.trimmed_mean_fraction)
    if name == "norm_clip":
        inner = (tff.aggregators.MeanFactory() if weighted
                 else tff.aggregators.UnweightedMeanFactory())
        return tff.aggregators.clipping_factory(float(settings.norm_clip), inner)
    if name == "tff_secure":
        return tff.learning.secure_aggregator(weighted=weighted)
    raise ValueError(f"unknown --aggregator={name}")

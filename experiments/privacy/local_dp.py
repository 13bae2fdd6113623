"""Local differential privacy: each client clips and noises its own update.

Guarantee: with clip C and noise multiplier z, every update that leaves a
client is its clipped update plus N(0, (zC)^2) per coordinate, so one
client's report is a Gaussian mechanism of L2 sensitivity 2C (replace-one)
on that client's data, whatever the server does with it. Assumes the clip
is applied to the whole update (all tensors, global norm) and that the noise
is drawn on the client, independently per round; nothing is assumed of the
server. What follows the noise (a compressed mean, `inner`) is
post-processing and keeps the guarantee.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_federated as tff


def _local_privatizer(value_type, clip: float, stddev: float):
    @tff.tensorflow.computation(value_type)
    def privatize(value):
        flat = tf.nest.flatten(value)
        clipped, _ = tf.clip_by_global_norm(flat, clip)
        noised = [c + tf.random.normal(tf.shape(c), stddev=stddev, dtype=c.dtype)
                  for c in clipped]
        return tf.nest.pack_sequence_as(value, noised)

    return privatize


class LocalGaussianFactory(tff.aggregators.UnweightedAggregationFactory):
    """Local DP: each client clips its update to `clip` and adds N(0, (z*clip)^2)
    to every coordinate before it leaves the client; the server averages what
    arrives and never sees an un-noised update. `inner` (an unweighted mean
    factory, e.g. a compressed one) replaces the plain mean after the noise."""

    def __init__(self, clip: float, noise_multiplier: float, inner=None):
        self._clip = clip
        self._stddev = noise_multiplier * clip
        self._inner = inner

    def create(self, value_type) -> tff.templates.AggregationProcess:
        privatize = _local_privatizer(value_type, self._clip, self._stddev)
        if self._inner is not None:
            inner = self._inner.create(value_type)

            @tff.federated_computation(inner.initialize.type_signature.result,
                                       tff.FederatedType(value_type, tff.CLIENTS))
            def noised_then_inner(state, value):
                return inner.next(state, tff.federated_map(privatize, value))

            return tff.templates.AggregationProcess(inner.initialize, noised_then_inner)

        @tff.federated_computation()
        def init_fn():
            return tff.federated_value((), tff.SERVER)

        @tff.federated_computation(init_fn.type_signature.result,
                                   tff.FederatedType(value_type, tff.CLIENTS))
        def next_fn(state, value):
            noised = tff.federated_map(privatize, value)
            return tff.templates.MeasuredProcessOutput(
                state=state, result=tff.federated_mean(noised),
                measurements=tff.federated_value((), tff.SERVER))

        return tff.templates.AggregationProcess(init_fn, next_fn)

"""DP-FTRL's correlated noise: a TFF aggregator for banded matrix factorisation.

Each round the clients' updates are clipped to L2 norm `clip` (all tensors,
global norm) and summed; the server adds w_t = (z_t - sum_{j=1}^{b-1} c_j
w_{t-j}) / c_0, z_t ~ N(0, (noise_multiplier clip)^2) per coordinate, and
divides by the expected cohort K, as TFF's tree aggregation does. So the
sequence of noises is w = C^{-1} z for the banded Toeplitz C of
experiments.privacy.banded_strategy, and the server's running sum of
updates carries A C^{-1} z: the release C x + z, post-processed. The state
holds the round and the last b - 1 noise vectors (b - 1 model-sized copies).
The noise is drawn from a stateless generator keyed by (key, round, tensor);
the caller gives a secret key (experiments.aggregators.chain draws it from the
OS's entropy), so nobody who knows the run's settings can regenerate the noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tensorflow_federated as tff


class BandedNoiseFactory(tff.aggregators.UnweightedAggregationFactory):
    """Clipped sum plus the banded strategy's correlated Gaussian noise, over K."""

    def __init__(self, clip: float, noise_multiplier: float, clients_per_round: int,
                 coefficients: Sequence[float], seed: int):
        self._clip = float(clip)
        self._stddev = float(noise_multiplier) * float(clip)
        self._clients = float(clients_per_round)
        self._c = [float(v) for v in coefficients]
        self._seed = int(seed)

    def create(self, value_type) -> tff.templates.AggregationProcess:
        specs = [(t.shape, t.dtype) for t in tff.structure.flatten(value_type)]
        history = len(self._c) - 1
        clip, stddev, clients, c, seed = (self._clip, self._stddev, self._clients, self._c,
                                          self._seed)

        @tff.tensorflow.computation()
        def initial_state():
            zeros = [[tf.zeros(shape, dtype) for shape, dtype in specs]
                     for _ in range(history)]
            return tf.constant(0, tf.int64), zeros

        @tff.tensorflow.computation(value_type)
        def clip_update(value):
            flat = tf.nest.flatten(value)
            clipped, _ = tf.clip_by_global_norm(flat, clip)
            return tf.nest.pack_sequence_as(value, clipped)

        state_type = initial_state.type_signature.result
        summed_type = tff.types.to_type(value_type)

        @tff.tensorflow.computation(state_type, summed_type)
        def add_noise(state, total):
            round_index, past = state
            leaves = tf.nest.flatten(total) if not isinstance(
                total, tff.structure.Struct) else tff.structure.flatten(total)
            noises = []
            for i, (shape, _) in enumerate(specs):
                key = tf.stack([tf.constant(seed, tf.int64), round_index * 1000 + i])
                z = tf.random.stateless_normal(shape, seed=key, stddev=stddev,
                                               dtype=tf.float32)
                for j in range(1, history + 1):
                    z -= c[j] * tf.cast(past[j - 1][i], tf.float32)
                noises.append(z / c[0])
            mean = [tf.cast((tf.cast(leaf, tf.float32) + w) / clients, dtype)
                    for leaf, w, (_, dtype) in zip(leaves, noises, specs, strict=True)]
            new_past = ([[tf.cast(w, dtype) for w, (_, dtype) in zip(noises, specs,
                                                                        strict=True)]]
                        + [list(p) for p in past[:-1]]) if history else []
            result = tff.types.type_to_py_container(
                tff.structure.pack_sequence_as(value_type, mean), value_type)
            return (round_index + 1, new_past), result

        @tff.federated_computation()
        def init_fn():
            return tff.federated_eval(initial_state, tff.SERVER)

        @tff.federated_computation(init_fn.type_signature.result,
                                   tff.FederatedType(value_type, tff.CLIENTS))
        def next_fn(state, value):
            total = tff.federated_sum(tff.federated_map(clip_update, value))
            out = tff.federated_map(add_noise, tff.federated_zip((state, total)))
            return tff.templates.MeasuredProcessOutput(
                state=out[0], result=out[1],
                measurements=tff.federated_value((), tff.SERVER))

        return tff.templates.AggregationProcess(init_fn, next_fn)


"""The model-update aggregator chain (robust -> DP -> compression -> secure sum).

Each mechanism is one factory here plus its flags in `experiments.config`.
With none selected, TFF's default (a plain, possibly weighted, mean) is used.
DP mechanisms (`--dp`) sit on the unweighted mean, as user-level DP needs:
with example weighting one client's influence would not be bounded by the clip.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_federated as tff

from experiments import compression, robust
from experiments.config import ExperimentConfig
from experiments.errors import UsageError


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


def _adaptive(config: ExperimentConfig):
    try:
        return tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
            noise_multiplier=float(config.noise_multiplier),
            clients_per_round=config.clients_per_round,
            initial_l2_norm_clip=float(config.initial_clip),
            target_unclipped_quantile=float(config.target_unclipped_quantile),
            learning_rate=float(config.adaptive_clip_learning_rate),
            clipped_count_stddev=float(config.clipped_count_stddev) or None)
    except ValueError:
        stddev = config.clipped_count_stddev or 0.05 * config.clients_per_round
        raise UsageError(
            f"--dp=adaptive: --noise_multiplier={config.noise_multiplier} must be below "
            f"2 x the clipped-count noise ({2 * stddev:g} with "
            f"--clients_per_round={config.clients_per_round}); raise "
            f"--clipped_count_stddev (default 0.05 x clients per round) or "
            f"--clients_per_round, or lower --noise_multiplier") from None


def _compressed(config: ExperimentConfig):
    """Compressed mean (experiments.compression), after local DP noise if --dp=local.

    Weighted algorithms weight each update before it is encoded (TFF's
    MeanFactory); the weight itself travels as one float32.
    """
    weighted = config.algorithm != "fedavg_unweighted"
    if config.compression == "tff":
        reference = tff.learning.compression_aggregator(
            zeroing=False, clipping=False, weighted=weighted)
        mean = reference
    else:
        method = compression.Method(config.compression, bits=config.quantization_bits,
                                    keep_fraction=config.keep_fraction, rank=config.rank)
        summed = compression.CompressedSumFactory(method, config.seed)
        mean = (tff.aggregators.MeanFactory(value_sum_factory=summed) if weighted
                else tff.aggregators.UnweightedMeanFactory(value_sum_factory=summed))
    if config.dp == "local":
        return LocalGaussianFactory(float(config.clip),
                                    float(config.noise_multiplier), inner=mean)
    return mean


def build(config: ExperimentConfig, weight_specs=None):
    """The aggregation factory for the config, or None for TFF's default mean.

    `weight_specs` (TensorSpecs of the trainable weights) is needed by `tree`.
    """
    dp = tff.aggregators.DifferentiallyPrivateFactory
    z, clip = float(config.noise_multiplier), float(config.clip)  # TFF wants floats
    if config.compression != "none":
        return _compressed(config)
    if config.aggregator != "mean":  # robust or secure (experiments.robust)
        return robust.factory(config)
    if config.dp == "none":
        return None
    if config.dp == "fixed":
        return dp.gaussian_fixed(noise_multiplier=z,
                                 clients_per_round=config.clients_per_round, clip=clip)
    if config.dp == "adaptive":
        return _adaptive(config)
    if config.dp == "tree":
        return dp.tree_aggregation(noise_multiplier=z,
                                   clients_per_round=config.clients_per_round,
                                   l2_norm_clip=clip, record_specs=weight_specs)
    if config.dp == "local":
        return LocalGaussianFactory(clip, z)
    raise ValueError(f"unknown --dp={config.dp}")

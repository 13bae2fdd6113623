"""The model-update aggregator chain (robust -> DP -> compression -> secure sum).

Each mechanism is one factory (in this package or `experiments.privacy`) plus
its settings group. With none selected, TFF's default (a plain, possibly
weighted, mean) is used. DP mechanisms (`--dp`) sit on the unweighted mean,
as user-level DP needs: with example weighting one client's influence would
not be bounded by the clip.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from typing import Any

import tensorflow_federated as tff
from google._upb import _message as upb_message

# TFF 0.87 exports this factory only through tff.learning.ddp_secure_aggregator, which
# fixes Skellam noise and adaptive clipping; the discrete Gaussian needs the class.
from tensorflow_federated.python.aggregators.distributed_dp import DistributedDpSumFactory

from experiments.aggregators import compression, fetchsgd, robust
from experiments.aggregators.settings import AggregatorSettings, CompressionSettings
from experiments.core.errors import UsageError
from experiments.core.settings import pick
from experiments.privacy import banded_strategy
from experiments.privacy.correlated_noise import BandedNoiseFactory
from experiments.privacy.local_dp import LocalGaussianFactory
from experiments.privacy.settings import DpSettings


@dataclasses.dataclass(frozen=True)
class ChainSettings:
    """What the aggregator chain needs to know of a run."""

    dp: DpSettings
    compression: CompressionSettings
    aggregator: AggregatorSettings
    weighted: bool  # example-weighted mean (FedAvg) rather than unweighted
    clients_per_round: int  # the expected cohort, by which TFF's DP factories normalise
    seed: int  # seeds the clients' compression randomness (and banded_mf's noise)
    strategy: tuple[float, ...] = ()  # banded_mf: the Toeplitz coefficients c_0..c_{b-1}

    @classmethod
    def of(cls, config: Any, population: int = 0) -> ChainSettings:
        """The chain's settings from a run's flags (an ExperimentConfig); `population`,
        the clients sampled from, sets banded_mf's participation separation N // K."""
        strategy = ()
        if config.dp == "banded_mf":
            if population < config.clients_per_round:
                raise ValueError("--dp=banded_mf needs the population sampled from")
            strategy = banded_strategy.strategy(
                config.total_rounds, config.bands, population // config.clients_per_round)
        return cls(pick(DpSettings, config), pick(CompressionSettings, config),
                   pick(AggregatorSettings, config),
                   weighted=config.algorithm != "fedavg_unweighted",
                   clients_per_round=config.clients_per_round, seed=config.seed,
                   strategy=strategy)


def noise_scale(dp: DpSettings, clients_per_round: int) -> float:
    """k / C: what the noise of a simulated cohort of C clients is scaled by on k real ones.

    TFF's central DP factories add N(0, (z clip)^2) to the sum of the round's k
    clients and divide by k. With --noise_cohort_size=C the average must get the
    noise of a deployment averaging C clients, std z clip / C, so the factories
    are given the noise multiplier z k / C (1 without --noise_cohort_size).
    """
    return clients_per_round / dp.noise_cohort_size if dp.noise_cohort_size else 1.0


def _adaptive(dp: DpSettings, clients_per_round: int):
    scale = noise_scale(dp, clients_per_round)
    try:
        return tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
            noise_multiplier=float(dp.noise_multiplier) * scale,
            clients_per_round=clients_per_round,
            initial_l2_norm_clip=float(dp.initial_clip),
            target_unclipped_quantile=float(dp.target_unclipped_quantile),
            learning_rate=float(dp.adaptive_clip_learning_rate),
            # TFF's default, 0.05 k, is already the simulated 0.05 C scaled by k / C.
            clipped_count_stddev=float(dp.clipped_count_stddev) * scale or None)
    except ValueError:
        cohort = dp.noise_cohort_size or clients_per_round
        flag = "--noise_cohort_size" if dp.noise_cohort_size else "--clients_per_round"
        stddev = dp.clipped_count_stddev or 0.05 * cohort
        raise UsageError(
            f"--dp=adaptive: --noise_multiplier={dp.noise_multiplier} must be below "
            f"2 x the clipped-count noise ({2 * stddev:g} with {flag}={cohort}); raise "
            f"--clipped_count_stddev (default 0.05 x clients per round) or "
            f"--clients_per_round, or lower --noise_multiplier") from None


def _compressed(settings: ChainSettings):
    """Compressed mean (experiments.aggregators.compression, or .fetchsgd's sketches),
    after local DP noise if --dp=local.

    Weighted algorithms weight each update before it is encoded (TFF's
    MeanFactory); the weight itself travels as one float32.
    """
    weighted, c, dp = settings.weighted, settings.compression, settings.dp
    if c.compression == "tff":
        reference = tff.learning.compression_aggregator(
            zeroing=False, clipping=False, weighted=weighted)
        mean = reference
    else:
        method = compression.Method.of(c)
        summed = (fetchsgd.FetchSgdSumFactory(method, settings.seed)
                  if c.compression == "fetchsgd"
                  else compression.CompressedSumFactory(method, settings.seed))
        mean = (tff.aggregators.MeanFactory(value_sum_factory=summed) if weighted
                else tff.aggregators.UnweightedMeanFactory(value_sum_factory=summed))
    if dp.dp == "local":
        return LocalGaussianFactory(float(dp.clip), float(dp.noise_multiplier), inner=mean)
    return mean


def _distributed(dp: DpSettings, aggregator: str, clients_per_round: int):
    """--dp=distributed through TFF's DistributedDpSumFactory under --aggregator=tff_secure
    (its discrete Gaussian or Skellam, the same encoding as experiments.privacy.
    discrete_gaussian: k_stddevs is passed as TFF's modular clipping probability
    erfc(k / sqrt 2)). Under
    --aggregator=secure_sum the mean is ours (experiments.algorithms.split_round)."""
    if aggregator == "secure_sum":
        return None
    # Eight nested aggregators inside the learning process nest TFF's computation
    # protos deeper than upb's default parse depth of 100 ("Error parsing message");
    # this process-wide switch is upb's only one for that depth.
    upb_message.SetAllowOversizeProtos(True)
    summed = DistributedDpSumFactory(
        noise_multiplier=float(dp.noise_multiplier),
        expected_clients_per_round=clients_per_round, bits=int(dp.num_bits),
        l2_clip=float(dp.clip), modclip_prob=math.erfc(dp.k_stddevs / math.sqrt(2)),
        beta=float(dp.beta), mechanism=f"distributed_{dp.distributed_noise}",
        rotation_type=dp.rotation_type)
    return tff.aggregators.UnweightedMeanFactory(  # the count is securely summed too
        value_sum_factory=summed, count_sum_factory=tff.aggregators.SecureSumFactory(
            upper_bound_threshold=1, lower_bound_threshold=0))


def build(settings: ChainSettings, weight_specs=None):
    """The aggregation factory for the settings, or None for TFF's default mean.

    `weight_specs` (TensorSpecs of the trainable weights) is needed by `tree`.
    """
    dp, factories = settings.dp, tff.aggregators.DifferentiallyPrivateFactory
    k = settings.clients_per_round
    z, clip = float(dp.noise_multiplier), float(dp.clip)  # TFF wants floats
    central_z = z * noise_scale(dp, k)
    if settings.compression.compression != "none":
        return _compressed(settings)
    if dp.dp == "distributed":
        return _distributed(dp, settings.aggregator.aggregator, k)
    if settings.aggregator.aggregator != "mean":  # robust or secure (robust.py)
        return robust.factory(settings.aggregator, settings.weighted)
    if dp.dp == "none":
        return None
    if dp.dp == "fixed":
        return factories.gaussian_fixed(noise_multiplier=central_z, clients_per_round=k,
                                        clip=clip)
    if dp.dp == "adaptive":
        return _adaptive(dp, k)
    if dp.dp == "tree":
        return factories.tree_aggregation(noise_multiplier=central_z, clients_per_round=k,
                                          l2_norm_clip=clip, record_specs=weight_specs)
    if dp.dp == "banded_mf":
        # The noise's key comes from the OS's entropy, never from --seed (recorded in
        # hparams.json: anyone could regenerate the noise and remove it).
        return BandedNoiseFactory(clip, central_z, k, settings.strategy, secrets.randbits(63))
    if dp.dp == "local":
        return LocalGaussianFactory(clip, z)
    raise ValueError(f"unknown --dp={dp.dp}")

"""The aggregation flags: which aggregator sums the updates, and how uploads are compressed."""

from __future__ import annotations

import dataclasses

from experiments.core.settings import setting

# Secure aggregation and robust aggregation (experiments.aggregators.robust,
# experiments.aggregators.secure_sum).
AGGREGATORS = ("mean", "median", "trimmed_mean", "norm_clip", "secure_sum", "tff_secure")
COMPRESSIONS = ("none", "quantize", "rotate_quantize", "random_mask", "low_rank",
                "low_rank_unbiased", "tff")
# Each compression setting and the methods it applies to (elsewhere it must stay
# at its default, and reports leave it blank).
COMPRESSION_SETTINGS = {"quantization_bits": ("quantize", "rotate_quantize"),
                        "keep_fraction": ("random_mask",),
                        "rank": ("low_rank", "low_rank_unbiased")}


@dataclasses.dataclass(frozen=True)
class AggregatorSettings:
    """The model aggregator: TFF's mean, a robust one, or a secure sum."""

    aggregator: str = setting(
        "mean", "mean (TFF's), median / trimmed_mean (coordinate-wise), norm_clip (clip "
        "each update's L2 norm, then mean), secure_sum (Bonawitz et al. 2017 simulated on "
        "quantised updates), tff_secure (tff.learning.secure_aggregator).", AGGREGATORS)
    trimmed_mean_fraction: float = setting(
        0.1, "trimmed_mean: fraction of clients dropped at each end, per coordinate.")
    norm_clip: float = setting(1.0, "norm_clip: L2 bound of each client update.")
    secagg_bits: int = setting(16, "secure_sum: bits per quantised coordinate (2..40).")
    secagg_range: float = setting(
        1.0, "secure_sum: coordinates are clipped to [-range, range] before quantising.")
    secagg_threshold: float = setting(
        0.6, "secure_sum: Shamir threshold t as a fraction of the round's clients.")
    secagg_dropout: float = setting(
        0.0, "secure_sum: fraction of the round's clients that drop after the keys are "
        "shared (their pairwise masks are recovered, their update is lost).")


@dataclasses.dataclass(frozen=True)
class CompressionSettings:
    """Compressed client updates (experiments.aggregators.compression)."""

    compression: str = setting(
        "none", "Upload compression: quantize (stochastic uniform), rotate_quantize "
        "(randomized Hadamard + quantize), random_mask (seeded subsampling), low_rank "
        "(structured updates: a biased rank-k projection), low_rank_unbiased (the same "
        "payload rescaled by m / k: unbiased), tff (tff.learning.compression_aggregator).",
        COMPRESSIONS)
    quantization_bits: int = setting(8, "quantize / rotate_quantize: bits per coordinate "
                                     "(1..16).")
    keep_fraction: float = setting(0.1, "random_mask: probability each coordinate is sent.")
    rank: int = setting(4, "low_rank / low_rank_unbiased: rank of each kernel's update.")

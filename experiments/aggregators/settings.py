"""The aggregation flags: which aggregator sums the updates, and how uploads are compressed."""

from __future__ import annotations

import dataclasses

from experiments.core.settings import setting

# Secure aggregation and robust aggregation (experiments.aggregators.robust,
# experiments.aggregators.secure_sum).
AGGREGATORS = ("mean", "median", "trimmed_mean", "norm_clip", "secure_sum", "tff_secure")
COMPRESSIONS = ("none", "quantize", "rotate_quantize", "random_mask", "low_rank",
                "low_rank_unbiased", "pipeline", "fetchsgd", "tff")
# Each compression setting and the methods it applies to (elsewhere it must stay
# at its default, and reports leave it blank).
COMPRESSION_SETTINGS = {"quantization_bits": ("quantize", "rotate_quantize"),
                        "keep_fraction": ("random_mask",),
                        "rank": ("low_rank", "low_rank_unbiased"),
                        "compression_stages": ("pipeline",),
                        "sketch_rows": ("fetchsgd",),
                        "sketch_columns_fraction": ("fetchsgd",),
                        "topk_fraction": ("fetchsgd",),
                        "error_feedback": ("quantize", "rotate_quantize", "random_mask",
                                           "low_rank", "low_rank_unbiased", "pipeline")}
# Pipeline stages (experiments.aggregators.pipeline): name -> what its value is.
STAGES = {"subsample": "fraction of coordinates kept, uniformly at random (unbiased)",
          "topk": "fraction of coordinates kept, the largest in magnitude (biased)",
          "sketch": "count-sketch columns as a fraction of the coordinates (unbiased)",
          "rotate": "",  # randomized Hadamard rotation, no value
          "sign": "",  # scaled signs, 1 bit per coordinate (biased; last stage only)
          "quantize": "bits per coordinate, 1..16 (last stage only)"}
TERMINAL = ("quantize", "sign")  # stages that end a pipeline
_NO_VALUE = ("rotate", "sign")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of a compression pipeline."""

    name: str
    value: float = 0.0


def parse_stages(spec: str) -> tuple[Stage, ...]:
    """'subsample:0.1,rotate,quantize:2' -> stages; ValueError saying what is valid."""
    valid = ("subsample:P, topk:F, sketch:F, rotate, quantize:B or sign (comma-separated, "
             "in order)")
    stages = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, value = part.partition(":")
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages: {valid}")
        if (name in _NO_VALUE) != (value == ""):
            raise ValueError(f"stage {part!r}: rotate and sign take no value, the others "
                             f"one; stages: {valid}")
        try:
            number = float(value) if value else 0.0
        except ValueError:
            raise ValueError(f"stage {part!r}: {value!r} is not a number") from None
        if name in ("subsample", "topk", "sketch") and not 0 < number <= 1:
            raise ValueError(f"stage {part!r}: the fraction must be in (0, 1]")
        if name == "quantize" and not (number.is_integer() and 1 <= number <= 16):
            raise ValueError(f"stage {part!r}: bits must be an integer in 1..16")
        stages.append(Stage(name, number))
    names = [s.name for s in stages]
    if not stages:
        raise ValueError(f"no stages; give e.g. 'subsample:0.1,rotate,quantize:2' ({valid})")
    if len(set(names)) < len(names):
        raise ValueError("each stage may appear once")
    if any(n in TERMINAL for n in names[:-1]):
        raise ValueError("quantize or sign must be the last stage, and only one of them")
    return tuple(stages)


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
        "payload rescaled by m / k: unbiased), pipeline (--compression_stages composed), "
        "fetchsgd (count sketches summed by the server, top-k unsketched with an error "
        "sketch; Rothchild et al. 2020), tff (tff.learning.compression_aggregator).",
        COMPRESSIONS)
    quantization_bits: int = setting(8, "quantize / rotate_quantize: bits per coordinate "
                                     "(1..16).")
    keep_fraction: float = setting(0.1, "random_mask: probability each coordinate is sent.")
    rank: int = setting(4, "low_rank / low_rank_unbiased: rank of each kernel's update.")
    error_feedback: bool = setting(
        False, "Each client adds to its update what its compressed uploads lost so far "
        "(EF-SGD, Karimireddy et al. 2019): state kept on the client; for biased "
        "compressors (topk, low_rank).")
    compression_stages: str = setting(
        "", "pipeline: stages applied in order on each tensor and inverted on the server, "
        "e.g. 'subsample:0.1,rotate,quantize:2' (subsample:P unbiased, topk:F biased, "
        "rotate, quantize:B last).")
    sketch_rows: int = setting(5, "fetchsgd: rows R of each tensor's count sketch (each "
                               "row its own bucket and sign hashes).")
    sketch_columns_fraction: float = setting(
        0.1, "fetchsgd: columns C of the sketch of an n-value tensor as a fraction of n, "
        "C = max(1, round(fraction n)); the upload is R C float32 per tensor.")
    topk_fraction: float = setting(
        0.01, "fetchsgd: the server keeps the k = max(1, ceil(fraction n)) coordinates of "
        "each tensor with the largest unsketched estimates.")

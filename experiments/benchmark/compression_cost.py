"""What update compression costs: each method's encode + decode, and whole compressed rounds.

The codecs are timed compiled and alone, on an update of the model's shape,
and set against a plain round; whole rounds with `rotate_quantize` at 2 bits
run interleaved with plain ones.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf

from experiments.aggregators import compression
from experiments.benchmark import timing
from experiments.benchmark.configs import experiment_config
from experiments.benchmark.settings import SEED
from experiments.benchmark.timing import median
from experiments.training.federated_trainer import FederatedTrainer

COMPRESSION_METHODS = (("quantize", {"quantization_bits": 8}),
                       ("rotate_quantize", {"quantization_bits": 2}),
                       ("random_mask", {"keep_fraction": 0.05}),
                       ("low_rank", {"rank": 8}))


def codec_seconds(method: Any, shapes: list[tuple[int, ...]], repeats: int = 5) -> float:
    """Median seconds of one client's encode + the server's decode, compiled."""
    rng = np.random.default_rng(0)
    update = [tf.constant(rng.normal(size=s).astype(np.float32) * 1e-2) for s in shapes]

    @tf.function(autograph=False)  # no Python control flow to convert
    def codec(round_seed):
        payload = compression.encode(method, update, round_seed)
        return compression.decode(method, payload, shapes, round_seed)

    codec(tf.constant(0))  # trace
    seconds = []
    for r in range(1, repeats + 1):
        began = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), codec(tf.constant(r)))
        seconds.append(time.perf_counter() - began)
    return median(seconds)


def _methods(task: Any, cohort: int, plain: float | None) -> dict[str, dict]:
    """Per method: its flags, one client's codec seconds, and a cohort's share of a round."""
    shapes = [tuple(w.shape) for w in task.build_model(SEED).trainable_weights]
    methods = {}
    for name, flags_ in COMPRESSION_METHODS:
        method = compression.Method(name, bits=flags_.get("quantization_bits", 8),
                                    keep_fraction=flags_.get("keep_fraction", 0.1),
                                    rank=flags_.get("rank", 4))
        codec = codec_seconds(method, shapes)
        methods[name] = {**flags_, "codec_seconds_per_client": codec,
                         "fraction_of_round": cohort * codec / plain if plain else None}
    return methods


def measure_compression(task: Any, data_dir: str, cohort: int, warmup: int,
                        rounds: int) -> dict:
    """Encode + decode cost of each compression method at `cohort` clients.

    Two measures: (1) per method, a cohort's encodes and decodes of an update
    of the model's shape (compiled, run alone) as a fraction of the median
    plain FedAvg round; (2) whole rounds of FedAvg without and with
    `rotate_quantize` at 2 bits, interleaved ABBA: `overhead_ratio`.
    """
    plain_config = experiment_config(data_dir, clients_per_round=cohort)
    packed_config = experiment_config(data_dir, clients_per_round=cohort,
                                      compression="rotate_quantize", quantization_bits=2)
    seconds = timing.alternating_rounds(
        {"plain": FederatedTrainer(plain_config, task),
         "compressed": FederatedTrainer(packed_config, task)},
        warmup, rounds, "compression")
    plain, packed = median(seconds["plain"]), median(seconds["compressed"])
    methods = _methods(task, cohort, plain)
    return {
        "cohort": cohort, "median_round_seconds_plain": plain,
        "median_round_seconds_rotate_quantize_2bit": packed,
        "overhead_ratio": packed / plain if plain else None,
        "max_codec_fraction_of_round": max(
            (m["fraction_of_round"] for m in methods.values()
             if m["fraction_of_round"] is not None), default=None),
        "methods": methods,
        "round_seconds_plain": seconds["plain"], "round_seconds_compressed": seconds["compressed"],
    }

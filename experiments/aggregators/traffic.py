"""Bits each client downloads and uploads in a round: the one place of accounting.

Down: the full float32 model (trainable and non-trainable weights), plus what
the compression aggregator broadcasts (its 32-bit round counter, none for
`fetchsgd`; for `--compression=tff`, TFF's encoder parameters). Up: without compression a
float32 update of every trainable weight; with compression the encoded
payload, counted by the aggregator from the payload tensors themselves
(`experiments.aggregators.compression`), averaged over the round's clients; with
distributed DP the rotated, padded vector of b-bit integers the secure sum adds. Weighted
algorithms add one float32 weight per client. metrics.csv gets
`bits_down_per_client`, `bits_up_per_client`, `compression_factor` (float32
upload / actual upload) and, as before, the same in bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from experiments.aggregators import compression
from experiments.aggregators.settings import CompressionSettings

_FLOAT32_BITS = 32
# Optimizer state a Mime-Lite client downloads, in model-sized vectors.
_OPTIMIZER_STATE = {"sgd": 0, "sgdm": 1, "adagrad": 1, "adam": 2, "yogi": 2}


def _second_vectors(algorithm: str, server_optimizer: str) -> tuple[int, int]:
    """Model-sized vectors sent besides the model (down) and the update (up): SCAFFOLD's
    control variates; Mime-Lite's optimizer state down and full-batch gradient up."""
    if algorithm == "scaffold":
        return 1, 1
    if algorithm == "mime_lite":
        return _OPTIMIZER_STATE[server_optimizer], 1
    return 0, 0


def _weighted(algorithm: str) -> bool:
    return algorithm in ("fedavg", "fedprox", "fedsgd", "mime_lite")


@dataclasses.dataclass(frozen=True)
class Traffic:
    """One client's traffic per round for a config and model.

    `bits_up` is the payload size known in advance (exact for every method
    but `random_mask`, whose mask is random: there it is the expectation,
    and the measured value replaces it); `float32_up` the uncompressed upload;
    `weight_bits` the float32 example weight of weighted algorithms.
    """

    bits_down: int
    bits_up: float
    float32_up: int
    weight_bits: int = 0
    measured: bool = False  # whether the aggregator reports the payload bits

    @classmethod
    def for_model(cls, algorithm: str, settings: CompressionSettings,
                  trainable: Sequence[np.ndarray], non_trainable: Sequence[np.ndarray],
                  server_optimizer: str = "sgd", local_floats: int = 0,
                  integers: tuple[int, int] | None = None) -> Traffic:
        """The traffic of `algorithm` with `settings` for a model with these weights;
        `local_floats` of the trainable weights stay on the clients (local layers);
        `integers` (bits, count): the update travels as that many b-bit integers."""
        if algorithm == "centralized":
            return cls(0, 0, 0)
        shapes = [tuple(np.shape(w)) for w in trainable]
        weight = _FLOAT32_BITS if _weighted(algorithm) else 0
        model = _FLOAT32_BITS * sum(int(np.size(w)) for w in
                                    list(trainable) + list(non_trainable))
        float32_up = _FLOAT32_BITS * sum(int(np.prod(s)) for s in shapes) + weight
        if local_floats:  # neither sent nor uploaded; compression is refused with them
            kept = _FLOAT32_BITS * local_floats
            return cls(model - kept, float32_up - kept, float32_up - kept, weight)
        down, up = _second_vectors(algorithm, server_optimizer)
        if down or up:  # no compression: refused with these algorithms
            vector = _FLOAT32_BITS * sum(int(np.prod(s)) for s in shapes)
            return cls(model + down * vector, float32_up + up * vector,
                       float32_up + up * vector, weight)
        if integers:  # distributed DP: no compression, no weights (both refused with it)
            bits, count = integers
            return cls(model, bits * count, float32_up)
        if settings.compression == "none":
            return cls(model, float32_up, float32_up, weight)
        if settings.compression == "tff":
            up, down = compression.tff_payload_bits(shapes)
            return cls(model + down, up + weight, float32_up, weight)
        method = compression.Method.of(settings)
        return cls(model + method.broadcast_bits,
                   compression.expected_bits(method, shapes) + weight, float32_up, weight,
                   measured=True)

    def row(self, aggregator_measurements: Mapping | None = None) -> dict:
        """The round's communication columns. The payload bits the aggregator
        measured (summed over the round's clients) replace the advance figure."""
        up = self.bits_up
        found = _find(aggregator_measurements) if self.measured else {}
        if found.get(compression.CLIENTS_KEY, 0) > 0:
            up = (found[compression.BITS_KEY] / found[compression.CLIENTS_KEY]
                  + self.weight_bits)
        up = int(up) if float(up).is_integer() else float(up)
        return {"bits_down_per_client": self.bits_down, "bits_up_per_client": up,
                "compression_factor": self.float32_up / up if up else None,
                "bytes_down_per_client": self.bits_down / 8, "bytes_up_per_client": up / 8}


def _find(measurements: Mapping | None) -> dict:
    """The compression measurements anywhere in the aggregator's nested output."""
    found: dict = {}

    def visit(node) -> None:
        if hasattr(node, "items"):
            for key, value in node.items():
                if key in (compression.BITS_KEY, compression.CLIENTS_KEY):
                    found[key] = int(value)
                else:
                    visit(value)

    visit(measurements)
    return found

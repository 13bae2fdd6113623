"""Bytes each client downloads and uploads in a round.

Without compression every client receives the full model and sends back a
float32 update of every trainable weight (plus, for weighted averaging, one
float32 weight); this module is where compressed payloads will be counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from experiments.config import ExperimentConfig

_FLOAT32_BYTES = 4


def bytes_per_client(config: ExperimentConfig, trainable: Sequence[np.ndarray],
                     non_trainable: Sequence[np.ndarray]) -> tuple[int, int]:
    """(bytes down, bytes up) for one participating client in one round."""
    if config.algorithm == "centralized":
        return 0, 0
    n_trainable = sum(int(np.size(w)) for w in trainable)
    n_other = sum(int(np.size(w)) for w in non_trainable)
    down = _FLOAT32_BYTES * (n_trainable + n_other)
    weighted = config.algorithm in ("fedavg", "fedprox", "fedsgd")
    up = _FLOAT32_BYTES * (n_trainable + (1 if weighted else 0))
    return down, up

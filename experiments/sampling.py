"""Which clients take part in a round, and the seeds they shuffle with.

Everything is a pure function of (--seed, round, client), not of a running
random state, so a resumed run samples exactly what an uninterrupted one does.
"""

from __future__ import annotations

import numpy as np

_CLIENTS_STREAM = 0
_SHUFFLE_STREAM = 1
_POOLED_STREAM = 2


def round_rng(seed: int, round_num: int, stream: int) -> np.random.Generator:
    """An independent generator for one purpose (`stream`) in one round."""
    return np.random.default_rng([seed, round_num, stream])


def sample_clients(population: int, clients_per_round: int, seed: int,
                   round_num: int) -> np.ndarray:
    """Indices of the round's clients: uniform, without replacement."""
    rng = round_rng(seed, round_num, _CLIENTS_STREAM)
    return np.sort(rng.choice(population, size=clients_per_round, replace=False))


def client_shuffle_seed(seed: int, round_num: int, client_index: int) -> int:
    """The seed a client's data is shuffled with in a round."""
    rng = np.random.default_rng([seed, round_num, _SHUFFLE_STREAM, int(client_index)])
    return int(rng.integers(0, 2**31 - 1))


def pooled_shuffle_seed(seed: int, round_num: int) -> int:
    """The seed the pooled (centralised) data is shuffled with in a round."""
    return int(round_rng(seed, round_num, _POOLED_STREAM).integers(0, 2**31 - 1))

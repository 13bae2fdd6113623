"""Which clients take part in a round, and the seeds they shuffle with.

Everything is a pure function of (--seed, round, client), not of a running
random state, so a resumed run samples exactly what an uninterrupted one does.
"""

from __future__ import annotations

import numpy as np

_CLIENTS_STREAM = 0
_SHUFFLE_STREAM = 1
_POOLED_STREAM = 2
_PERMUTATION_STREAM = 3


def round_rng(seed: int, round_num: int, stream: int) -> np.random.Generator:
    """An independent generator for one purpose (`stream`) in one round."""
    return np.random.default_rng([seed, round_num, stream])


def sample_clients(population: int, clients_per_round: int, seed: int,
                   round_num: int) -> np.ndarray:
    """Indices of the round's clients: uniform, without replacement."""
    rng = round_rng(seed, round_num, _CLIENTS_STREAM)
    return np.sort(rng.choice(population, size=clients_per_round, replace=False))


def poisson_clients(population: int, clients_per_round: int, seed: int,
                    round_num: int) -> np.ndarray:
    """Indices of the round's clients when each joins with probability K / N."""
    rng = round_rng(seed, round_num, _CLIENTS_STREAM)
    return np.flatnonzero(rng.random(population) < clients_per_round / population)


def cyclic_clients(population: int, clients_per_round: int, seed: int,
                   round_num: int) -> np.ndarray:
    """Indices of the round's clients under one fixed permutation cut into passes.

    Each client takes part at most once per pass of population // K rounds
    (the N mod K clients left over by the cut never take part).
    """
    order = round_rng(seed, 0, _PERMUTATION_STREAM).permutation(population)
    per_pass = population // clients_per_round
    slot = (round_num - 1) % per_pass
    return np.sort(order[slot * clients_per_round:(slot + 1) * clients_per_round])


def select_clients(mode: str, population: int, clients_per_round: int, seed: int,
                   round_num: int) -> np.ndarray:
    """The round's clients under --client_sampling=`mode`."""
    chooser = {"uniform": sample_clients, "poisson": poisson_clients,
               "cyclic": cyclic_clients}[mode]
    return chooser(population, clients_per_round, seed, round_num)


def client_shuffle_seed(seed: int, round_num: int, client_index: int) -> int:
    """The seed a client's data is shuffled with in a round."""
    rng = np.random.default_rng([seed, round_num, _SHUFFLE_STREAM, int(client_index)])
    return int(rng.integers(0, 2**31 - 1))


def pooled_shuffle_seed(seed: int, round_num: int) -> int:
    """The seed the pooled (centralised) data is shuffled with in a round."""
    return int(round_rng(seed, round_num, _POOLED_STREAM).integers(0, 2**31 - 1))

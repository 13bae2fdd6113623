"""Banded Toeplitz strategies for DP-FTRL by matrix factorisation.

DP-FTRL releases the prefix sums A x of the clients' clipped, summed updates
x_1..x_n (A: the lower-triangular all-ones matrix). A factorisation A = B C
releases C x + z, z ~ N(0, (z_mult clip)^2) per coordinate, and estimates
A x = B (C x + z) = A (x + C^{-1} z): each round's sum gets the correlated
noise w = C^{-1} z, which a banded C makes cheap (w_t = (z_t - sum_{j<b}
c_j w_{t-j}) / c_0 keeps b - 1 past vectors). Here C is lower-triangular,
b-banded and Toeplitz (coefficients c_0..c_{b-1}: McKenna 2024, "Scaling up
the banded matrix factorization mechanism"; Choquette-Choo et al. 2023,
"(Amplified) banded matrix factorization").

Participation is cyclic (experiments.simulation.sampling): a client joins
every k = N // K rounds at a fixed offset. With b <= k two participations'
columns of C never share a row, so one client's contribution to C x has
squared L2 norm at most clip^2 times the sum of its columns' squared norms
(add-or-remove adjacency): the sensitivity is computed exactly for each
offset and the worst taken. Bands beyond k are refused. The coefficients are
chosen to minimise the total squared error of the prefix sums,
sens(C)^2 ||A C^{-1}||_F^2, and scaled so that the whole run's sensitivity
is 1; epsilon is then one Gaussian mechanism of noise multiplier z / sens_t
for the release up to round t. With b = 1, C is a multiple of the identity
and the mechanism is DP-SGD's independent noise (no amplification).
"""

from __future__ import annotations

import functools
import json
import math
import os

import numpy as np
from scipy import optimize, signal

from experiments.core.paths import CACHE_DIR

STRATEGY_CACHE = os.path.join(CACHE_DIR, "banded_mf")


def inverse_coefficients(c: np.ndarray, n: int) -> np.ndarray:
    """First n coefficients of C^{-1} (lower-triangular Toeplitz, as C's inverse is)."""
    impulse = np.zeros(n)
    impulse[0] = 1.0
    return signal.lfilter([1.0], np.asarray(c, np.float64), impulse)


def prefix_error(c: np.ndarray, n: int) -> float:
    """||A C^{-1}||_F^2: A C^{-1} is Toeplitz with the cumulative sums of C^{-1}'s
    coefficients, the q-th of which appears on n - q diagonal entries."""
    e = np.cumsum(inverse_coefficients(c, n))
    return float(np.sum((n - np.arange(n)) * e ** 2))


def column_norms(c: np.ndarray, n: int, t: int | None = None) -> np.ndarray:
    """Squared norms of C's first t rows' columns j = 0..n-1 (rows 0..t-1)."""
    t = n if t is None else t
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(c, np.float64) ** 2)])
    length = np.clip(t - np.arange(n), 0, len(c))  # rows of column j within the band
    return cumulative[length]


def sensitivity(c: np.ndarray, n: int, separation: int, t: int | None = None) -> float:
    """L2 sensitivity (per unit clip) of the first t rows of C x for cyclic
    participation every `separation` rounds, worst offset; needs bands <= separation."""
    if len(c) > separation:
        raise ValueError(f"{len(c)} bands exceed the separation of {separation} rounds")
    norms = column_norms(c, n, t)
    return math.sqrt(max(float(np.sum(norms[i::separation])) for i in range(separation)))


def _initial(bands: int) -> np.ndarray:
    """The banded square root of the prefix-sum matrix (c_j = C(2j, j) / 4^j)."""
    return np.array([math.comb(2 * j, j) / 4 ** j for j in range(bands)])


@functools.lru_cache(maxsize=32)
def optimise(rounds: int, bands: int, separation: int) -> tuple[float, ...]:
    """Coefficients c_0..c_{b-1} minimising sens^2 x ||A C^{-1}||_F^2 over `rounds`,
    scaled to a whole-run sensitivity of 1."""
    if bands == 1:
        return (1.0 / sensitivity(np.ones(1), rounds, separation),)

    def loss(tail: np.ndarray) -> float:
        c = np.concatenate([[1.0], tail])
        value = sensitivity(c, rounds, separation) ** 2 * prefix_error(c, rounds)
        return math.log(value) if math.isfinite(value) else 1e300

    start = _initial(bands)[1:]
    best = optimize.minimize(loss, start, method="L-BFGS-B", options={"maxiter": 500})
    tail = best.x if best.fun <= loss(start) else start
    c = np.concatenate([[1.0], tail])
    return tuple(float(v) for v in c / sensitivity(c, rounds, separation))


@functools.lru_cache(maxsize=32)
def strategy(rounds: int, bands: int, separation: int, cache_dir: str = STRATEGY_CACHE
             ) -> tuple[float, ...]:
    """The optimised coefficients, read from / written to `cache_dir` (one JSON file
    per configuration) so that a run and its resumption use the very same ones; read
    once per process (the accountant asks every round)."""
    path = (os.path.join(cache_dir, f"banded_n{rounds}_b{bands}_k{separation}.json")
            if cache_dir else "")
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return tuple(float(v) for v in json.load(f)["coefficients"])
    c = np.asarray(optimise(rounds, bands, separation))
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump({"rounds": rounds, "bands": bands, "separation": separation,
                       "coefficients": c.tolist()}, f)
        os.replace(temporary, path)
    return tuple(float(v) for v in c)

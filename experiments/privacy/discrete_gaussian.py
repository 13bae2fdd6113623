"""The distributed discrete Gaussian (Kairouz, Liu, Steinke 2021) and Skellam mechanisms.

Each client turns its update into integers before the secure sum and adds its
own share of the noise, so the server only ever sees the noisy sum:

1. clip the update to L2 norm c, pad it to the rotation's size d';
2. rotate it with random signs shared by the round's clients (`hd`: Walsh-
   Hadamard, d' a power of two; `dft`: the discrete Fourier transform of the
   vector read as d'/2 complex numbers), which spreads its mass so that few
   coordinates are large;
3. scale by s (the heuristic of the paper's Section 4.4: k standard deviations
   of the noisy sum of n clients fit into b bits) and round each coordinate
   stochastically to an integer; with beta > 0 the rounding is repeated until
   the rounded vector's norm is within the bound of the paper's Proposition 22
   (conditional randomized rounding), so the integer sensitivity is known;
4. add integer noise of variance (s sigma_local)^2 per coordinate, where
   sigma_local = noise_multiplier c / sqrt(n), so n shares sum to central DP's
   noise std noise_multiplier c: the discrete Gaussian N_Z(0, (s sigma_local)^2),
   or (`noise="skellam"`, Agarwal, Kairouz, Liu 2021) the Skellam distribution,
   the difference of two Poisson((s sigma_local)^2 / 2) draws, whose shares sum
   to a Skellam exactly (the discrete Gaussian's only nearly);
5. reduce mod 2^b for the secure sum, which adds mod 2^b. The server maps the
   sum to [-2^(b-1), 2^(b-1)), divides by s and rotates back.

A sum outside the b-bit range wraps (modular clipping); that costs accuracy,
not privacy (the reduction is a function of the noisy sum). The privacy of
the whole is accounted in experiments.privacy.distributed_accounting from
the same parameters (`Encoding`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from experiments.privacy.settings import DpSettings

# TFF's DistributedDpSumFactory caps the scale here: larger ones add nothing but
# overflow risk. The same cap keeps the two paths' accounting identical.
MAX_SCALE = 1e6
# Added to the rounded norm bound (in update units), as TFF does, so float error in
# the norm check cannot push a client over the accounted bound.
NORM_LEEWAY = 1e-5
_MAX_ROUNDING_TRIES = 1000


def padded_dimension(dimension: int, rotation: str) -> int:
    """d': the rotation's size (hd: the next power of two; dft: the next even number)."""
    dimension = max(1, dimension)
    if rotation == "hd":
        return 1 << math.ceil(math.log2(dimension))
    return 2 * math.ceil(dimension / 2)


def scale_factor(local_stddev: float, clip: float, bits: int, clients: int,
                 dimension: int, k_stddevs: float) -> float:
    """s such that k stddevs of n clients' noisy, rounded sum fit into b bits.

    Solves 2^b = 2k sqrt(c^2 n^2 / d' + (1/(4 s^2) + sigma^2) n) s (the paper's
    Section 4.4 with a flat rotation, as TFF's `_heuristic_scale_factor`),
    capped at MAX_SCALE.
    """
    room = 2.0 ** (2 * bits) - clients * k_stddevs ** 2
    if room <= 0:
        raise ValueError(f"{bits} bits cannot hold {k_stddevs} stddevs of {clients} "
                         f"clients' rounding")
    spread = math.sqrt(clip ** 2 * clients ** 2 / dimension + clients * local_stddev ** 2)
    return min(math.sqrt(room) / (2 * k_stddevs * spread), MAX_SCALE)


def rounded_norm_bound(norm: float, beta: float, dimension: int) -> float:
    """L2 bound of a vector of norm <= `norm` after (conditional) stochastic rounding
    to the integer grid (the paper's Theorem 1 / Proposition 22; beta = 0: plain
    rounding, which moves every coordinate by less than 1)."""
    plain = norm + math.sqrt(dimension)
    if beta == 0:
        return plain
    squared = (norm ** 2 + dimension / 4
               + math.sqrt(2 * math.log(1 / beta)) * (norm + math.sqrt(dimension) / 2))
    return min(plain, math.sqrt(squared))


@dataclasses.dataclass(frozen=True)
class Encoding:
    """Every parameter of one round's encoding, derived from the flags and the model.

    `clients` is the expected cohort n that sets each share's noise; `dimension`
    the number of trainable parameters d.
    """

    clip: float
    noise_multiplier: float
    clients: int
    bits: int
    beta: float
    k_stddevs: float
    rotation: str
    dimension: int
    noise: str = "dgauss"  # or "skellam"

    @property
    def padded(self) -> int:
        """d', the length of the rotated, integer vector each client uploads."""
        return padded_dimension(self.dimension, self.rotation)

    @property
    def local_stddev(self) -> float:
        """Each client's noise std in update units: central std / sqrt(n)."""
        return self.noise_multiplier * self.clip / math.sqrt(self.clients)

    @property
    def scale(self) -> float:
        """s: update units to integer steps."""
        return scale_factor(self.local_stddev, self.clip, self.bits, self.clients,
                            self.padded, self.k_stddevs)

    @property
    def scaled_stddev(self) -> float:
        """Each client's noise std, in integer steps."""
        return self.local_stddev * self.scale

    @property
    def norm_bound(self) -> float:
        """L2 bound of a client's rounded vector in integer steps (before noise)."""
        gamma = 1 / self.scale  # rounding granularity in update units
        inflated = gamma * rounded_norm_bound(self.clip / gamma, self.beta, self.padded)
        return (inflated + NORM_LEEWAY) * self.scale

    @property
    def upload_bits(self) -> int:
        """Bits a client's masked input takes in the secure sum: b per coordinate of d'."""
        return self.bits * self.padded


def encoding_of(dp: DpSettings, clients: int, dimension: int) -> Encoding:
    """The encoding of a run's --dp=distributed flags for cohorts of `clients` and
    a model of `dimension` trainable parameters."""
    return Encoding(clip=dp.clip, noise_multiplier=dp.noise_multiplier, clients=clients,
                    bits=dp.num_bits, beta=dp.beta, k_stddevs=dp.k_stddevs,
                    rotation=dp.rotation_type, dimension=dimension,
                    noise=dp.distributed_noise)


# ----- the random pieces -----------------------------------------------------------------


def sample(rng: np.random.Generator, sigma: float, size: int) -> np.ndarray:
    """`size` draws of the discrete Gaussian N_Z(0, sigma^2) (int64).

    Canonne, Kamath, Steinke 2020, Algorithm 3: discrete Laplace proposals of
    scale t = floor(sigma) + 1, accepted with probability
    exp(-(|y| - sigma^2 / t)^2 / (2 sigma^2)).
    """
    if sigma == 0:
        return np.zeros(size, np.int64)
    t = math.floor(sigma) + 1
    p = 1 - math.exp(-1 / t)
    out = np.empty(size, np.int64)
    todo = np.arange(size)
    while todo.size:
        y = rng.geometric(p, todo.size) - rng.geometric(p, todo.size)  # discrete Laplace
        keep = rng.random(todo.size) < np.exp(-(np.abs(y) - sigma ** 2 / t) ** 2
                                              / (2 * sigma ** 2))
        out[todo[keep]] = y[keep]
        todo = todo[~keep]
    return out


def sample_skellam(rng: np.random.Generator, sigma: float, size: int) -> np.ndarray:
    """`size` draws of the symmetric Skellam distribution of variance sigma^2 (int64):
    the difference of two Poisson(sigma^2 / 2) draws."""
    if sigma == 0:
        return np.zeros(size, np.int64)
    lam = sigma ** 2 / 2
    return rng.poisson(lam, size).astype(np.int64) - rng.poisson(lam, size)


def sample_noise(rng: np.random.Generator, encoding: Encoding) -> np.ndarray:
    """One client's noise share for the encoding's padded vector."""
    draw = sample_skellam if encoding.noise == "skellam" else sample
    return draw(rng, encoding.scaled_stddev, encoding.padded)


def signs(seed: tuple[int, ...], padded: int) -> np.ndarray:
    """The round's random +-1 diagonal, shared by its clients and the server."""
    return np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), padded)


def _walsh_hadamard(x: np.ndarray) -> np.ndarray:
    """Orthonormal Walsh-Hadamard transform of a vector of power-of-two length."""
    y = x.astype(np.float64).copy()
    h, n = 1, y.size
    while h < n:
        y = y.reshape(-1, 2, h)
        y = np.stack([y[:, 0] + y[:, 1], y[:, 0] - y[:, 1]], axis=1).reshape(n)
        h *= 2
    return y / math.sqrt(n)


def rotate(x: np.ndarray, diagonal: np.ndarray, rotation: str) -> np.ndarray:
    """The orthogonal map R x = F D x of a padded vector (F: hd or dft)."""
    x = x * diagonal
    if rotation == "hd":
        return _walsh_hadamard(x)
    half = x.size // 2
    z = np.fft.fft(x[:half] + 1j * x[half:], norm="ortho")
    return np.concatenate([z.real, z.imag])


def unrotate(y: np.ndarray, diagonal: np.ndarray, rotation: str) -> np.ndarray:
    """R^T y, the inverse of `rotate`."""
    if rotation == "hd":
        x = _walsh_hadamard(y)  # the orthonormal WHT is its own inverse
    else:
        half = y.size // 2
        z = np.fft.ifft(y[:half] + 1j * y[half:], norm="ortho")
        x = np.concatenate([z.real, z.imag])
    return x * diagonal


def round_conditionally(x: np.ndarray, beta: float, bound: float,
                        rng: np.random.Generator) -> np.ndarray:
    """Unbiased stochastic rounding to integers, repeated (beta > 0) until the
    result's L2 norm is <= `bound`, which happens with probability >= 1 - beta."""
    floor = np.floor(x)
    for _ in range(_MAX_ROUNDING_TRIES):
        rounded = floor + (rng.random(x.shape) < x - floor)
        if beta == 0 or np.linalg.norm(rounded) <= bound:
            return rounded.astype(np.int64)
    raise RuntimeError(f"conditional rounding exceeded {_MAX_ROUNDING_TRIES} tries "
                       f"(norm bound {bound:.6g})")


# ----- client and server ------------------------------------------------------------------


def wrap(values: np.ndarray, bits: int) -> np.ndarray:
    """Integers reduced mod 2^b into [-2^(b-1), 2^(b-1))."""
    half = 1 << (bits - 1)
    return (values + half) % (1 << bits) - half


def encode(update: np.ndarray, encoding: Encoding, diagonal: np.ndarray,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One client's input to the secure sum, and the same before the modular
    reduction (which only the simulation sees, to count wrapped coordinates).

    Args:
      update: the client's flat float update, `encoding.dimension` long.
      encoding: the round's parameters.
      diagonal: the round's shared random signs (`signs`).
      rng: the client's own randomness (rounding and noise).
    """
    x = np.asarray(update, np.float64)
    norm = np.linalg.norm(x)
    if norm > encoding.clip:
        x = x * (encoding.clip / norm)
    padded = np.zeros(encoding.padded)
    padded[:x.size] = x
    scaled = rotate(padded, diagonal, encoding.rotation) * encoding.scale
    integers = round_conditionally(scaled, encoding.beta, encoding.norm_bound, rng)
    noisy = integers + sample_noise(rng, encoding)
    return wrap(noisy, encoding.bits), noisy


def decode(total: np.ndarray, encoding: Encoding, diagonal: np.ndarray) -> np.ndarray:
    """The server's estimate of the sum of the clients' clipped updates from the
    secure sum's result (integers mod 2^b, any representative)."""
    centred = wrap(np.asarray(total, np.int64), encoding.bits).astype(np.float64)
    rotated = centred / encoding.scale
    return unrotate(rotated, diagonal, encoding.rotation)[:encoding.dimension]

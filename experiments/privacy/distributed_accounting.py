"""Privacy of the distributed discrete Gaussian and Skellam over a secure sum, via RDP.

One round (experiments.privacy.discrete_gaussian): m clients' rounded,
integer vectors, each of L2 norm <= B2 and L1 norm <= B1 = B2 min(sqrt(d'), B2)
(integers: L1 <= L2^2), are summed with m discrete Gaussian shares of std
sigma (integer steps). Adjacency is replace-one with a fixed cohort (as the
`uniform` sampling of experiments.privacy.accounting), so the sum moves by at
most Delta2 = 2 B2 and Delta1 = 2 B1, and both neighbours carry exactly m
noise shares. The sum of m discrete Gaussians is not a discrete Gaussian; the
paper bounds the gap (Kairouz, Liu, Steinke 2021, Proposition 14, with
tau = 10 sum_{k=1}^{m-1} exp(-2 pi^2 sigma^2 k / (k + 1))):

    eps(a) = min( a/2 l2^2 + tau d',
                  a/2 (l2^2 + 2 l1 tau + tau^2 d'),
                  a/2 (l2 + tau sqrt(d'))^2 ),   l2 = Delta2 / (sqrt(m) sigma),
                                                l1 = Delta1 / (sqrt(m) sigma),

valid for sigma >= 1/2. Skellam shares (Agarwal, Kairouz, Liu 2021) sum to a
Skellam of variance mu = m sigma^2 exactly, and its RDP (their Theorem 3.5,
for integer vectors; any mu > 0) is

    eps(a) = a Delta2^2 / (2 mu)
             + min( ((2a - 1) Delta2^2 + 6 Delta1) / (4 mu^2), 3 Delta1 / (2 mu) ),

the Gaussian's plus a term that vanishes as mu grows. Rounding enters through
B2 (its inflation of the clip), the noise actually added through m, the
clients whose shares reach the sum (dropped clients' shares are lost). Amplification by the cohort
being a uniform sample of m of the n eligible clients uses the general bound
for subsampling without replacement (Wang, Balle, Kasiviswanathan 2019,
Theorem 9), which holds for any base mechanism, at integer orders; dp-
accounting's tighter bound for the subsampled Gaussian relies on the
Gaussian's form and is not used here. Poisson sampling is not accounted:
there the number of noise shares would differ between neighbours.
"""

from __future__ import annotations

import functools
import math

import dp_accounting as dpa
import numpy as np
from scipy import special

from experiments.privacy.discrete_gaussian import Encoding

ORDERS = tuple(range(2, 129)) + (160, 192, 256)
MIN_STDDEV = 0.5  # Proposition 14 needs each share's std >= 1/2 (integer steps)


def tau(sigma: float, shares: int) -> float:
    """The paper's tau: how far m discrete Gaussian shares are from one."""
    k = np.arange(1, shares, dtype=np.float64)
    return float(10 * np.sum(np.exp(-2 * math.pi ** 2 * sigma ** 2 * k / (k + 1))))


def base_rdp(alpha: float, l2: float, l1: float, inflation: float, dimension: int) -> float:
    """Proposition 14's RDP at order `alpha` of the unsampled distributed mechanism.

    Args:
      alpha: RDP order (> 1).
      l2: L2 sensitivity over the total noise std, Delta2 / (sqrt(m) sigma).
      l1: L1 sensitivity over the total noise std.
      inflation: tau.
      dimension: d', the number of noised coordinates.
    """
    return min(alpha / 2 * l2 ** 2 + inflation * dimension,
               alpha / 2 * (l2 ** 2 + 2 * l1 * inflation + inflation ** 2 * dimension),
               alpha / 2 * (l2 + inflation * math.sqrt(dimension)) ** 2)


def skellam_rdp(alpha: float, delta2: float, delta1: float, variance: float) -> float:
    """Agarwal et al.'s RDP at order `alpha` of the Skellam mechanism of total variance
    `variance` for integer inputs of L2 and L1 sensitivity `delta2` and `delta1`."""
    return (alpha * delta2 ** 2 / (2 * variance)
            + min(((2 * alpha - 1) * delta2 ** 2 + 6 * delta1) / (4 * variance ** 2),
                  3 * delta1 / (2 * variance)))


def subsampled_rdp(eps, alpha: int, gamma: float) -> float:
    """RDP at integer order `alpha` of a mechanism with RDP `eps` run on a uniform
    subset of a fraction `gamma` of the population (WBK19, Theorem 9; replace-one)."""
    if gamma >= 1:
        return eps(alpha)
    e2 = eps(2)
    terms = [0.0, 2 * math.log(gamma) + math.log(special.comb(alpha, 2))
             + min(math.log(4) + e2 + math.log1p(-math.exp(-e2)) if e2 > 0 else -math.inf,
                   e2 + math.log(2))]
    for j in range(3, alpha + 1):
        terms.append(math.log(2) + (j - 1) * eps(j) + j * math.log(gamma)
                     + special.gammaln(alpha + 1) - special.gammaln(j + 1)
                     - special.gammaln(alpha - j + 1))
    return float(special.logsumexp(terms)) / (alpha - 1)


def check(encoding: Encoding) -> None:
    """Raises ValueError where Proposition 14 does not apply (a discrete Gaussian noise
    share below 1/2 step; Skellam's bound holds at any variance)."""
    if encoding.noise == "dgauss" and 0 < encoding.scaled_stddev < MIN_STDDEV:
        raise ValueError(
            f"each client's discrete noise has std {encoding.scaled_stddev:.3g} integer "
            f"steps, below the {MIN_STDDEV} the accounting needs")


@functools.lru_cache(maxsize=256)
def round_rdp(encoding: Encoding, eligible: int, shares: int) -> tuple[float, ...]:
    """RDP at every order of one round whose sum holds `shares` clients' inputs and
    noise, a uniform sample of the `eligible` clients."""
    if shares == 0:
        return (0.0,) * len(ORDERS)
    if encoding.noise_multiplier == 0:
        return (math.inf,) * len(ORDERS)
    check(encoding)
    sigma = encoding.scaled_stddev
    bound = encoding.norm_bound
    delta2 = 2 * bound  # replace-one
    delta1 = 2 * bound * min(math.sqrt(encoding.padded), bound)  # integers: L1 <= L2^2
    total = math.sqrt(shares) * sigma  # the std of the noise in the sum
    if encoding.noise == "skellam":
        def eps(alpha: float) -> float:
            return skellam_rdp(alpha, delta2, delta1, total ** 2)
    else:
        inflation = tau(sigma, shares)

        def eps(alpha: float) -> float:
            return base_rdp(alpha, delta2 / total, delta1 / total, inflation,
                            encoding.padded)

    gamma = shares / eligible
    return tuple(min(subsampled_rdp(eps, a, gamma), eps(a)) for a in ORDERS)


def epsilon(encoding: Encoding, rounds: dict[tuple[int, int], int], delta: float) -> float:
    """epsilon after rounds given as {(eligible n, shares m): number of rounds}."""
    rdp = np.zeros(len(ORDERS))
    for (eligible, shares), count in rounds.items():
        if count and shares:
            rdp = rdp + count * np.asarray(round_rdp(encoding, eligible, shares))
    if not rdp.any():
        return 0.0
    if not np.isfinite(rdp).any():
        return math.inf
    return float(dpa.rdp.compute_epsilon(list(ORDERS), rdp, delta)[0])

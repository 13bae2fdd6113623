"""--dp=distributed --distributed_noise=skellam: the Skellam shares and their accounting.

Checked against independent computations: the sampler against the Skellam
distribution's variance, the RDP bound against the exact Renyi divergence of
two shifted one-dimensional Skellam distributions (a log-space sum over the
pmf; a bound must never be below it, and one with the variance mistaken for
twice its value is), the epsilon at 20 bits against central DP's from dp-accounting, the
decoded noise against central DP's std, and TFF's Skellam factory's own
measurements against our encoding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from experiments.aggregators.chain_test import _run, _session, tff  # noqa: F401
from experiments.config import ExperimentConfig
from experiments.privacy import accounting, discrete_gaussian, distributed_accounting
from experiments.privacy.distributed_dp_test import _check_central_noise, _config, _encoding


def _skellam_logpmf(k: np.ndarray, lam: float) -> np.ndarray:
    """log P(X - Y = k), X, Y ~ Poisson(lam): a log-space sum over Y's value, exact in
    the far tails where scipy's pmf underflows (they dominate high Renyi orders)."""
    j = np.arange(int(lam + 40 * math.sqrt(lam) + 60))[None, :]
    x = np.abs(k)[:, None] + j  # the pmf is symmetric; X = |k| + Y >= 0

    def log_poisson(n: np.ndarray) -> np.ndarray:
        return n * math.log(lam) - lam - special.gammaln(n + 1)

    return special.logsumexp(log_poisson(x) + log_poisson(j), axis=1)


def _exact_renyi(alpha: int, shift: int, variance: float) -> float:
    """D_alpha(Sk + shift || Sk) for the symmetric Skellam of `variance`, summed over
    the pmf out to where the terms (largest near k = (alpha - 1) shift) are negligible."""
    lam = variance / 2
    reach = int(60 * math.sqrt(variance) + 10 * alpha * shift + 100)
    k = np.arange(-reach, reach + 1)
    log_p, log_q = _skellam_logpmf(k - shift, lam), _skellam_logpmf(k, lam)
    return float(special.logsumexp(alpha * log_p + (1 - alpha) * log_q)) / (alpha - 1)


@pytest.mark.parametrize("sigma", [0.4, 3.0, 40.0])
def test_sampler_has_the_skellams_variance(sigma: float) -> None:
    draws = discrete_gaussian.sample_skellam(np.random.default_rng(1), sigma, 200_000)
    assert draws.dtype == np.int64
    assert abs(draws.mean()) < 5 * sigma / math.sqrt(draws.size)
    assert draws.var() == pytest.approx(sigma ** 2, rel=0.015)  # > 6 standard errors
    lam = sigma ** 2 / 2  # and the shape: P(0) of the Skellam, not of a Gaussian
    assert np.mean(draws == 0) == pytest.approx(stats.skellam.pmf(0, lam, lam), abs=0.005)


CASES = [(a, shift, var) for a in (2, 4, 16, 64) for shift in (1, 3) for var in (2.0, 8.0, 50.0)]


def test_rdp_bound_is_never_below_the_exact_divergence() -> None:
    for alpha, shift, variance in CASES:
        exact = _exact_renyi(alpha, shift, variance)
        bound = distributed_accounting.skellam_rdp(alpha, shift, shift, variance)
        assert bound >= exact * (1 - 1e-9), (alpha, shift, variance, bound, exact)
    # Tight where the noise is large: within 2% of the exact divergence.
    exact = _exact_renyi(8, 1, 400.0)
    assert distributed_accounting.skellam_rdp(8, 1, 1, 400.0) == pytest.approx(exact,
                                                                                rel=0.02)


def test_the_check_fails_on_a_bound_with_the_wrong_variance() -> None:
    # Skellam(lam, lam) has variance 2 lam: a bound that took 2 lam for lam (the
    # parametrisations differ between papers) would claim half the divergence, and the
    # exact sums show it.
    wrong = [(a, s, v) for a, s, v in CASES
             if distributed_accounting.skellam_rdp(a, s, s, 2 * v) < _exact_renyi(a, s, v)]
    assert len(wrong) >= len(CASES) // 2


def _mechanism(bits: int, z: float, noise: str, shares: int = 0) -> accounting.Mechanism:
    dp = ExperimentConfig(dp="distributed", noise_multiplier=z, clip=0.5, num_bits=bits,
                          distributed_noise=noise)
    return accounting.mechanism(dp, 10, "uniform", 300, 199_210, shares)


@pytest.mark.parametrize("z", [0.7, 1.0, 3.0])
def test_at_20_bits_epsilon_is_central_dps_within_half_a_percent(z: float) -> None:
    central = accounting.Mechanism("fixed", z, 10, 300, "uniform", 300 ** -1.1)
    reference = accounting.epsilon_rdp(central, 200)
    skellam = accounting.epsilon_rdp(_mechanism(20, z, "skellam"), 200)
    assert skellam == pytest.approx(reference, rel=5e-3)
    assert skellam >= reference * (1 - 1e-6)
    # At few bits the scale is small, the Skellam's variance in integer steps too, and
    # its extra term costs more than the discrete Gaussian's tau.
    coarse = [accounting.epsilon_rdp(_mechanism(b, z, "skellam"), 200) for b in (8, 12)]
    assert coarse[0] > coarse[1] > skellam


def test_round_rdp_is_theorem_3_5_with_the_encodings_sensitivity() -> None:
    e = _encoding(noise="skellam", bits=10, noise_multiplier=0.5, dimension=500, clients=5)
    d2 = 2 * e.norm_bound
    d1 = 2 * e.norm_bound * min(math.sqrt(e.padded), e.norm_bound)
    mu = 5 * e.scaled_stddev ** 2  # five shares
    rdp = distributed_accounting.round_rdp(e, 5, 5)  # everyone: no amplification
    for alpha, value in zip(distributed_accounting.ORDERS, rdp, strict=True):
        by_hand = (alpha * d2 ** 2 / (2 * mu)
                   + min(((2 * alpha - 1) * d2 ** 2 + 6 * d1) / (4 * mu ** 2),
                         3 * d1 / (2 * mu)))
        assert value == pytest.approx(by_hand, rel=1e-12)
    # A share below half a step is fine for Skellam (the discrete Gaussian refuses it).
    tiny = _encoding(noise="skellam", bits=4, noise_multiplier=0.01, clients=5)
    assert tiny.scaled_stddev < distributed_accounting.MIN_STDDEV
    distributed_accounting.check(tiny)


def test_shares_add_up_to_central_dps_noise() -> None:
    _check_central_noise(_encoding(noise="skellam"))


def test_the_noise_check_fails_without_the_skellam_shares(monkeypatch) -> None:
    monkeypatch.setattr(discrete_gaussian, "sample_skellam",
                        lambda rng, sigma, size: np.zeros(size, np.int64))
    with pytest.raises(AssertionError):
        _check_central_noise(_encoding(noise="skellam"))


def test_tffs_skellam_factory_encodes_as_ours(tff) -> None:  # noqa: F811
    from experiments.aggregators import chain

    config = _config(aggregator="tff_secure", clip=0.5, clients_per_round=5,
                     distributed_noise="skellam")
    process = chain.build(chain.ChainSettings.of(config)).create(
        tff.TensorType(np.float32, [3000]))
    output = process.next(process.initialize(), [np.zeros(3000, np.float32)] * 5)
    measured = output.measurements["mean_value"]
    ours = _encoding(clients=5, noise="skellam")
    assert float(measured["scale_factor"]) == pytest.approx(ours.scale, rel=1e-6)
    assert float(measured["scaled_inflated_l2"]) == pytest.approx(ours.norm_bound, rel=1e-6)
    assert float(measured["scaled_local_stddev"]) == pytest.approx(ours.scaled_stddev,
                                                                   rel=1e-6)
    assert _uses_skellam(process)
    dgauss = chain.build(chain.ChainSettings.of(_config(
        aggregator="tff_secure", clip=0.5, clients_per_round=5))).create(
        tff.TensorType(np.float32, [3000]))
    assert not _uses_skellam(dgauss)  # the check tells the two apart


def _uses_skellam(process) -> bool:
    """Whether TFF's process was built with the Skellam query (its type signature
    names the query's state, which holds an L1 bound only for Skellam)."""
    return "l1_norm_bound" in str(process.initialize.type_signature)


@pytest.mark.parametrize("aggregator", ["secure_sum", "tff_secure"])
def test_end_to_end_reports_skellams_epsilon(emnist_dir: str, tmp_path,
                                             aggregator: str) -> None:
    _, rows = _run(emnist_dir, str(tmp_path), dp="distributed", aggregator=aggregator,
                   client_sampling="uniform", noise_multiplier=1.0, num_bits=16,
                   distributed_noise="skellam")
    population, k, d = 6, 3, 785 * 62  # the logistic model's parameters
    m = accounting.Mechanism("distributed", 1.0, k, population, "uniform",
                             population ** -1.1,
                             encoding=_encoding(clip=1.0, clients=k, dimension=d,
                                                noise="skellam"))
    for r, row in enumerate(rows, start=1):
        assert float(row["epsilon_rdp"]) == pytest.approx(accounting.epsilon_rdp(m, r),
                                                          rel=1e-12)
    dgauss = accounting.Mechanism("distributed", 1.0, k, population, "uniform",
                                  population ** -1.1,
                                  encoding=_encoding(clip=1.0, clients=k, dimension=d))
    assert accounting.epsilon_rdp(m, 3) != accounting.epsilon_rdp(dgauss, 3)

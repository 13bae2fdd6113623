"""--dp=distributed: the discrete Gaussian encoding, its accounting, and both paths.

Checked against independent computations: the rotations against their
matrices, the sampler against the discrete Gaussian's exact variance (a sum
over its pmf), the decoded noise against central DP's std z * clip (and not
the wrong splits z * clip / sqrt(n) or / n), Proposition 14 against the
formula written out here, the subsampling bound against dp-accounting's at
order 2 (where both are exact) and above it at every order, and TFF's
DistributedDpSumFactory's own measurements against our encoding. Each
privacy check is also run against a copy of the mechanism with the protection
removed (no noise shares; shares that do not add up) and must fail there.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys

import dp_accounting as dpa
import numpy as np
import pytest
from scipy import linalg

from experiments.aggregators.chain_test import _assert_noise, _run, _session, tff  # noqa: F401
from experiments.config import ExperimentConfig, validate
from experiments.core.errors import UsageError
from experiments.core.paths import REPO_ROOT
from experiments.privacy import accounting, discrete_gaussian, distributed_accounting
from experiments.privacy.discrete_gaussian import Encoding

BETA = math.exp(-0.5)


def _encoding(**overrides) -> Encoding:
    base = dict(clip=0.5, noise_multiplier=1.0, clients=10, bits=16, beta=BETA,
                k_stddevs=4.0, rotation="hd", dimension=3000)
    return Encoding(**{**base, **overrides})


# ----- the encoding ----------------------------------------------------------------------
@pytest.mark.parametrize("rotation", ["hd", "dft"])
def test_rotation_is_orthogonal_and_inverted(rotation: str) -> None:
    d = discrete_gaussian.padded_dimension(50, rotation)
    assert d == (64 if rotation == "hd" else 50)
    diagonal = discrete_gaussian.signs((3,), d)
    matrix = np.stack([discrete_gaussian.rotate(e, diagonal, rotation) for e in np.eye(d)],
                      axis=1)
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(d), atol=1e-12)
    if rotation == "hd":  # the Sylvester Hadamard matrix times the signs
        np.testing.assert_allclose(matrix, linalg.hadamard(d) / 8 * diagonal, atol=1e-12)
    x = np.random.default_rng(0).normal(size=d)
    np.testing.assert_allclose(
        discrete_gaussian.unrotate(discrete_gaussian.rotate(x, diagonal, rotation),
                                   diagonal, rotation), x, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.6, 3.0, 40.0])
def test_sampler_has_the_discrete_gaussians_variance(sigma: float) -> None:
    support = np.arange(-int(20 * sigma) - 5, int(20 * sigma) + 6)
    pmf = np.exp(-support.astype(float) ** 2 / (2 * sigma ** 2))
    variance = float(np.sum(support ** 2 * pmf) / np.sum(pmf))  # exact, not sigma^2
    draws = discrete_gaussian.sample(np.random.default_rng(1), sigma, 200_000)
    assert draws.dtype == np.int64
    assert abs(draws.mean()) < 5 * math.sqrt(variance / draws.size)
    # The sample variance of 2e5 draws is within 1.5% (> 6 standard errors).
    assert draws.var() == pytest.approx(variance, rel=0.015)
    if sigma < 1:  # far from the continuous Gaussian's variance there
        assert abs(variance - sigma ** 2) > 0.015 * variance


@pytest.mark.parametrize("beta", [0.0, BETA])
def test_rounded_vectors_stay_within_the_accounted_norm(beta: float) -> None:
    zero_noise = _encoding(beta=beta, bits=8, dimension=256, noise_multiplier=0.0)
    rng = np.random.default_rng(2)
    diagonal = discrete_gaussian.signs((1,), zero_noise.padded)
    norms = []
    for k in range(200):
        x = rng.normal(size=256)
        _, rounded = discrete_gaussian.encode(x, zero_noise, diagonal,
                                              np.random.default_rng(k))
        norms.append(np.linalg.norm(rounded))
    assert max(norms) <= zero_noise.norm_bound
    plain = zero_noise.clip * zero_noise.scale + math.sqrt(zero_noise.padded)
    assert (beta > 0) == (zero_noise.norm_bound < plain)  # beta's bound is tighter


def _decoded_noise(e: Encoding, draws: int = 4) -> np.ndarray:
    """The server's decoded sum when every client's update is zero: pure noise."""
    out = []
    for call in range(draws):
        diagonal = discrete_gaussian.signs((call,), e.padded)
        inputs = [discrete_gaussian.encode(np.zeros(e.dimension), e, diagonal,
                                           np.random.default_rng([call, k]))[0]
                  for k in range(e.clients)]
        total = discrete_gaussian.wrap(np.sum(inputs, axis=0), e.bits)
        out.append(discrete_gaussian.decode(total, e, diagonal))
    return np.concatenate(out)


def _check_central_noise(e: Encoding) -> None:
    sigma = e.noise_multiplier * e.clip
    _assert_noise(_decoded_noise(e), sigma, wrong={
        "z*clip/sqrt(n)": sigma / math.sqrt(e.clients), "z*clip*sqrt(n)":
        sigma * math.sqrt(e.clients), "5% too small": 0.95 * sigma})


@pytest.mark.parametrize("rotation", ["hd", "dft"])
def test_shares_add_up_to_central_dps_noise(rotation: str) -> None:
    _check_central_noise(_encoding(rotation=rotation))


def test_the_noise_check_fails_without_the_protection(monkeypatch) -> None:
    e = _encoding()
    with monkeypatch.context() as patch:  # clients add no noise share
        patch.setattr(discrete_gaussian, "sample",
                      lambda rng, sigma, size: np.zeros(size, np.int64))
        with pytest.raises(AssertionError):
            _check_central_noise(e)
    with monkeypatch.context() as patch:  # shares of std central / n: they sum too small
        patch.setattr(Encoding, "local_stddev", property(
            lambda self: self.noise_multiplier * self.clip / self.clients))
        with pytest.raises(AssertionError):
            _check_central_noise(e)


def test_decoded_sum_is_the_sum_of_clipped_updates_without_noise() -> None:
    e = _encoding(noise_multiplier=0.0, bits=20, dimension=1000)
    rng = np.random.default_rng(4)
    updates = [rng.normal(size=1000) * s for s in (0.001, 0.01, 1.0)]
    clipped = [u * min(1, e.clip / np.linalg.norm(u)) for u in updates]
    diagonal = discrete_gaussian.signs((7,), e.padded)
    inputs = [discrete_gaussian.encode(u, e, diagonal, np.random.default_rng(k))[0]
              for k, u in enumerate(updates)]
    decoded = discrete_gaussian.decode(np.sum(inputs, axis=0), e, diagonal)
    # Rounding error: at most sqrt(d') integer steps per client, / scale.
    assert np.linalg.norm(decoded - np.sum(clipped, axis=0)) <= 3 * math.sqrt(
        e.padded) / e.scale


# ----- the accounting --------------------------------------------------------------------
def _prop14_by_hand(alpha: float, e: Encoding, shares: int) -> float:
    """Kairouz, Liu, Steinke 2021, Proposition 14, written out independently."""
    sigma = e.local_stddev * e.scale
    t = 0.0
    for k in range(1, shares):
        t += math.exp(-2 * math.pi ** 2 * sigma ** 2 * k / (k + 1))
    t *= 10
    d2 = 2 * e.norm_bound  # replace-one
    d1 = 2 * e.norm_bound * min(math.sqrt(e.padded), e.norm_bound)
    var = shares * sigma ** 2
    return min(alpha * d2 ** 2 / (2 * var) + t * e.padded,
               alpha / 2 * (d2 ** 2 / var + 2 * d1 * t / math.sqrt(var) + t ** 2 * e.padded),
               alpha / 2 * (d2 / math.sqrt(var) + t * math.sqrt(e.padded)) ** 2)


@pytest.mark.parametrize("bits,z", [(5, 0.2), (8, 0.5), (16, 1.0)])
def test_round_rdp_is_proposition_14(bits: int, z: float) -> None:
    e = _encoding(bits=bits, noise_multiplier=z, dimension=200, clients=5)
    rdp = distributed_accounting.round_rdp(e, 5, 5)  # everyone: no amplification
    for alpha, value in zip(distributed_accounting.ORDERS, rdp, strict=True):
        assert value == pytest.approx(_prop14_by_hand(alpha, e, 5), rel=1e-12)
    if bits == 6:  # coarse: tau matters here, so the test would see it missing
        assert distributed_accounting.tau(e.scaled_stddev, 5) > 1e-6


def test_subsampling_bound_against_dp_accounting_on_a_gaussian() -> None:
    sigma, gamma = 1.3, 0.05

    def gaussian(alpha: float) -> float:
        return alpha / (2 * sigma ** 2)

    ours = [distributed_accounting.subsampled_rdp(gaussian, a, gamma) for a in (2, 3, 8, 32)]
    theirs = dpa.rdp.rdp_privacy_accountant._compute_rdp_sample_wor_gaussian(  # noqa: SLF001
        gamma, sigma, [2, 3, 8, 32])
    assert ours[0] == pytest.approx(theirs[0], rel=1e-9)  # order 2: the same single term
    assert all(o >= t * (1 - 1e-9) for o, t in zip(ours, theirs, strict=True))
    assert all(o < gaussian(a) for o, a in zip(ours, (2, 3, 8, 32), strict=True))


def _mechanism(bits: int, z: float = 1.0, shares: int = 0, dimension: int = 199_210):
    dp = ExperimentConfig(dp="distributed", noise_multiplier=z, clip=0.5, num_bits=bits)
    return accounting.mechanism(dp, 10, "uniform", 300, dimension, shares)


@pytest.mark.parametrize("z", [0.7, 1.0, 3.0])
def test_at_20_bits_epsilon_is_central_dps_within_half_a_percent(z: float) -> None:
    central = accounting.Mechanism("fixed", z, 10, 300, "uniform", 300 ** -1.1)
    reference = accounting.epsilon_rdp(central, 200)
    assert accounting.epsilon_rdp(_mechanism(20, z), 200) == pytest.approx(reference,
                                                                           rel=5e-3)
    # Fewer bits cost privacy (rounding inflates the sensitivity): never below central.
    eps = [accounting.epsilon_rdp(_mechanism(b, z), 200) for b in (10, 12, 16, 20)]
    assert all(a >= b >= reference * (1 - 1e-6) for a, b in zip(eps, eps[1:], strict=False))


def test_lost_noise_shares_are_charged() -> None:
    full = accounting.epsilon_rdp(_mechanism(16), 100)
    fewer = accounting.epsilon_rdp(_mechanism(16, shares=7), 100)
    assert fewer > full * 1.2  # 7 shares: noise variance 0.7x, and a smaller sample


def test_a_noise_share_below_half_a_step_is_refused() -> None:
    with pytest.raises(UsageError, match="--dp=distributed: each client's discrete noise"):
        _mechanism(4, z=0.01, dimension=100)


# ----- flags -----------------------------------------------------------------------------
def _config(**overrides) -> ExperimentConfig:
    base = dict(algorithm="fedavg_unweighted", dp="distributed", aggregator="secure_sum",
                noise_multiplier=1.0, clients_per_round=4)
    return ExperimentConfig(**{**base, **overrides})


@pytest.mark.parametrize("overrides,names", [
    ({"aggregator": "mean"}, ["--dp=distributed", "--aggregator=secure_sum or tff_secure"]),
    ({"client_sampling": "poisson"}, ["--client_sampling=uniform"]),
    ({"aggregator": "tff_secure", "num_bits": 24}, ["--num_bits=24", "1..22"]),
    ({"num_bits": 1}, ["--num_bits=1 is too small"]),
    ({"beta": 1.0}, ["--beta=1.0"]),
    ({"secagg_bits": 20}, ["--secagg_bits", "--num_bits"]),
    ({"dropout_rate": 0.1}, ["--dropout_rate", "--dp=distributed"]),
    ({"availability": 0.5}, ["--availability", "--dp=distributed"]),
    ({"compression": "quantize", "aggregator": "mean"}, ["--dp=distributed"]),
    ({"dp": "fixed", "aggregator": "mean", "num_bits": 12}, ["--num_bits",
                                                             "--dp=distributed"]),
])
def test_bad_distributed_combinations_are_one_line_usage_errors(overrides, names) -> None:
    validate(_config())
    validate(_config(aggregator="tff_secure", rotation_type="dft", secagg_dropout=0.0))
    with pytest.raises(UsageError) as error:
        validate(_config(**overrides))
    assert "\n" not in str(error.value)
    for name in names:
        assert name in str(error.value), str(error.value)


# ----- TFF's factory and end to end ------------------------------------------------------
@pytest.mark.parametrize("rotation", ["hd", "dft"])
def test_tffs_factory_encodes_as_ours(tff, rotation: str) -> None:  # noqa: F811
    from experiments.aggregators import chain

    config = _config(aggregator="tff_secure", clip=0.5, clients_per_round=5,
                     rotation_type=rotation)
    process = chain.build(chain.ChainSettings.of(config)).create(
        tff.TensorType(np.float32, [3000]))
    output = process.next(process.initialize(), [np.zeros(3000, np.float32)] * 5)
    measured = output.measurements["mean_value"]
    ours = _encoding(clients=5, rotation=rotation)
    assert int(measured["padded_dim"]) == ours.padded
    assert float(measured["scale_factor"]) == pytest.approx(ours.scale, rel=1e-6)
    assert float(measured["scaled_inflated_l2"]) == pytest.approx(ours.norm_bound, rel=1e-6)
    assert float(measured["scaled_local_stddev"]) == pytest.approx(ours.scaled_stddev,
                                                                   rel=1e-6)


@pytest.mark.parametrize("aggregator", ["secure_sum", "tff_secure"])
def test_end_to_end_reports_epsilon_bits_and_wraps(emnist_dir: str, tmp_path,
                                                   aggregator: str) -> None:
    path, rows = _run(emnist_dir, str(tmp_path), dp="distributed", aggregator=aggregator,
                      client_sampling="uniform", noise_multiplier=1.0, num_bits=16)
    population, k, d = 6, 3, 785 * 62  # the logistic model's parameters
    m = accounting.Mechanism("distributed", 1.0, k, population, "uniform",
                             population ** -1.1,
                             encoding=_encoding(clip=1.0, clients=k, dimension=d))
    for r, row in enumerate(rows, start=1):
        assert float(row["epsilon_rdp"]) == pytest.approx(accounting.epsilon_rdp(m, r),
                                                          rel=1e-12)
        assert row["epsilon_pld"] == ""
        assert int(row["bits_up_per_client"]) == 16 * 65536  # d' = 2^16 >= 48 670
    if aggregator == "secure_sum":
        # k = 4 stddevs of the noisy sum fit: about erfc(4 / sqrt 2) = 6e-5 wrap.
        rate = math.erfc(4 / math.sqrt(2))
        assert all(float(row["ddp_wrapped_fraction"]) <= 5 * rate for row in rows)
        assert all(int(row["secagg_survivors"]) == k for row in rows)
    with open(os.path.join(path, "metrics.csv"), newline="") as f:
        assert len(list(csv.DictReader(f))) == 3


def test_the_planner_prints_the_trainers_epsilon() -> None:
    command = [sys.executable, "-m", "experiments.privacy_plan", "--dp=distributed",
               "--dimension=199210", "--clip=0.5", "--num_bits=12", "--noise_multiplier=1",
               "--clients_per_round=10", "--population=300", "--total_rounds=200"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert done.returncode == 0, done.stderr
    printed = float(done.stdout.split("epsilon (RDP): ")[1].split()[0])
    assert printed == pytest.approx(accounting.epsilon_rdp(_mechanism(12), 200), abs=1e-4)
    missing = subprocess.run(command[:4] + command[5:], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=120, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip().count("\n") == 0 and "--dimension" in missing.stderr


def test_client_noise_is_not_a_function_of_the_runs_settings(tff,  # noqa: F811
                                                              emnist_dir: str) -> None:
    from experiments.algorithms import split_round
    from experiments.simulation.outliers import Outliers
    from experiments.simulation.settings import OutlierSettings
    from tasks import registry

    config = _config(clients_per_round=2, model="logistic", data_dir=emnist_dir)
    task = registry.get(config.task, config.task_config())
    flats = [np.zeros(785 * 62, np.float32)] * 2
    sums = []
    for _ in range(2):  # the same settings, --seed included: fresh noise each time
        process = split_round.build(config, task, Outliers(OutlierSettings(), 0, 6, 62), 6)
        total, _, _ = process._distributed_sum(flats, 1, [], 2, 0)  # noqa: SLF001
        sums.append(total)
    assert not np.array_equal(sums[0], sums[1])

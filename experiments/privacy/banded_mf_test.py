"""--dp=banded_mf: the strategy, its sensitivity and epsilon, and the noise the server adds.

The strategy's error and sensitivity are checked against the dense matrices
(and the sensitivity against every participation pattern a client could
have, by brute force); band width 1 against DP-SGD's independent noise and
its epsilon against dp-accounting's Gaussian composed over the
participations; the aggregator's noise against C^{-1} z: applying C to the
noise it added gives back independent Gaussians of std z * clip, which a copy
that ignores the past noise (independent noise) fails.
"""

from __future__ import annotations

import itertools
import math

import dp_accounting as dpa
import numpy as np
import pytest

from experiments.aggregators.chain_test import _run, _session, _std_consistent, tff  # noqa: F401
from experiments.config import ExperimentConfig, validate
from experiments.core.errors import UsageError
from experiments.core.settings import pick
from experiments.privacy import accounting, banded_strategy
from experiments.privacy.correlated_noise import BandedNoiseFactory
from experiments.privacy.settings import DpSettings


def _dense(c, n: int) -> np.ndarray:
    C = np.zeros((n, n))
    for j, value in enumerate(c):
        C += np.diag(np.full(n - j, value), -j)
    return C


@pytest.mark.parametrize("n,b,k", [(12, 3, 3), (40, 5, 8), (30, 1, 7)])
def test_strategy_error_and_sensitivity_against_dense_matrices(n: int, b: int, k: int) -> None:
    c = np.asarray(banded_strategy.optimise(n, b, k))
    C, A = _dense(c, n), np.tril(np.ones((n, n)))
    assert banded_strategy.prefix_error(c, n) == pytest.approx(
        float(np.sum((A @ np.linalg.inv(C)) ** 2)), rel=1e-9)
    gram = np.abs(C.T @ C)
    offsets = max(math.sqrt(u @ gram @ u) for u in
                  (np.isin(np.arange(n), np.arange(i, n, k)).astype(float) for i in range(k)))
    assert banded_strategy.sensitivity(c, n, k) == pytest.approx(offsets, rel=1e-9)
    assert offsets == pytest.approx(1.0, rel=1e-9)  # scaled to sensitivity 1
    if n <= 12:  # every pattern a client with separation >= k could have
        worst = max(math.sqrt(np.sum((C @ np.array(u, float)) ** 2)) for u in
                    itertools.product([0, 1], repeat=n)
                    if all(b2 - a >= k for a, b2 in itertools.pairwise(np.flatnonzero(u))))
        assert worst <= offsets * (1 + 1e-9)


def test_bands_cut_the_error_and_one_band_is_independent_noise() -> None:
    n, k = 100, 30
    errors = {b: banded_strategy.prefix_error(np.asarray(banded_strategy.optimise(n, b, k)), n)
              for b in (1, 4, 16)}
    assert errors[16] < errors[4] < 0.5 * errors[1]
    participations = math.ceil(n / k)
    assert banded_strategy.optimise(n, 1, k) == pytest.approx((1 / math.sqrt(participations),))


def _banded(bands: int, z: float = 1.0, rounds: int = 100) -> accounting.Mechanism:
    dp = ExperimentConfig(dp="banded_mf", noise_multiplier=z, bands=bands,
                          client_sampling="cyclic")
    return accounting.mechanism(pick(DpSettings, dp), 10, "cyclic", 300, rounds=rounds)


@pytest.mark.parametrize("z", [0.5, 2.0])
def test_one_band_is_the_gaussian_composed_over_the_participations(z: float) -> None:
    m, rounds = _banded(1, z), 100
    participations = math.ceil(rounds / (300 // 10))  # 4: rounds 1, 31, 61, 91
    per_round = z * math.sqrt(participations)  # the noise each round gets, over clip
    direct = dpa.rdp.RdpAccountant()
    direct.compose(dpa.GaussianDpEvent(per_round), participations)
    assert accounting.epsilon_rdp(m, rounds) == pytest.approx(
        direct.get_epsilon(m.delta), rel=1e-6)
    pld = dpa.pld.PLDAccountant()
    pld.compose(dpa.GaussianDpEvent(per_round), participations)
    assert accounting.epsilon_pld(m, rounds) == pytest.approx(pld.get_epsilon(m.delta),
                                                              rel=1e-3)
    # After one participation only the first column counts: less spent.
    assert accounting.epsilon_rdp(m, 1) < accounting.epsilon_rdp(m, rounds)


def test_bands_beyond_the_separation_and_stray_flags_are_refused() -> None:
    with pytest.raises(UsageError, match="--bands=31 must be between 1 and the 30 rounds"):
        _banded(31)
    base = dict(algorithm="fedavg_unweighted", dp="banded_mf", noise_multiplier=1.0,
                client_sampling="cyclic")
    validate(ExperimentConfig(**base))
    for bad, name in (({"client_sampling": "uniform"}, "--client_sampling=cyclic"),
                      ({"dp": "tree", "bands": 4}, "--bands only applies"),
                      ({"bands": 0}, "--bands=0")):
        with pytest.raises(UsageError, match=name):
            validate(ExperimentConfig(**{**base, **bad}))


def _noise_series(tff, coefficients, rounds: int, dim: int = 3000,  # noqa: F811
                  clip: float = 0.5, z: float = 1.3) -> np.ndarray:
    process = BandedNoiseFactory(clip, z, 1, coefficients, seed=5).create(
        tff.TensorType(np.float32, [dim]))
    state, out = process.initialize(), []
    for _ in range(rounds):
        step = process.next(state, [np.zeros(dim, np.float32)])
        state = step.state
        out.append(np.asarray(step.result, np.float64))
    return np.stack(out)


def _check_correlated(series: np.ndarray, coefficients, sigma: float) -> None:
    z_hat = _dense(coefficients, len(series)) @ series  # C w: should be iid N(0, sigma^2)
    assert _std_consistent(z_hat, sigma)
    for lag in (1, 2):
        r = float(np.mean(z_hat[lag:] * z_hat[:-lag])) / sigma ** 2
        assert abs(r) < 5 / math.sqrt(z_hat[lag:].size), f"lag {lag} correlation {r:.4f}"


def test_the_server_adds_c_inverse_z(tff, monkeypatch) -> None:  # noqa: F811
    c = banded_strategy.optimise(20, 4, 5)
    series = _noise_series(tff, c, rounds=12)
    _check_correlated(series, c, 1.3 * 0.5)
    # The prefix sums carry A C^{-1} z: their variance grows as ||(A C^{-1})_t||^2.
    prefix = np.cumsum(series, axis=0)
    expected = np.sum((np.tril(np.ones((12, 12))) @ np.linalg.inv(_dense(c, 12))) ** 2,
                      axis=1) * (1.3 * 0.5) ** 2
    np.testing.assert_allclose(prefix.var(axis=1), expected, rtol=0.12)
    # Without the correlation (each round's z / c_0 alone) the same check fails.
    independent = series.copy()
    independent[1:] = np.random.default_rng(0).normal(size=series[1:].shape) * (
        1.3 * 0.5 / c[0])
    with pytest.raises(AssertionError):
        _check_correlated(independent, c, 1.3 * 0.5)


def test_end_to_end_reports_the_strategys_epsilon(emnist_dir: str, tmp_path) -> None:
    _, rows = _run(emnist_dir, str(tmp_path), dp="banded_mf", client_sampling="cyclic",
                   noise_multiplier=1.0, bands=2, clients_per_round=3, total_rounds=3)
    m = accounting.Mechanism("banded_mf", 1.0, 3, 6, "cyclic", 6 ** -1.1, bands=2, rounds=3)
    for r, row in enumerate(rows, start=1):
        assert float(row["epsilon_rdp"]) == pytest.approx(accounting.epsilon_rdp(m, r),
                                                          rel=1e-12)


def test_the_noise_is_not_a_function_of_the_runs_settings(tff) -> None:  # noqa: F811
    from experiments.aggregators import chain

    config = ExperimentConfig(algorithm="fedavg_unweighted", dp="banded_mf",
                              noise_multiplier=1.0, client_sampling="cyclic", bands=2,
                              clients_per_round=1, total_rounds=4)
    draws = []
    for _ in range(2):  # the same settings, --seed included: fresh noise each time
        process = chain.build(chain.ChainSettings.of(config, population=4)).create(
            tff.TensorType(np.float32, [50]))
        draws.append(np.asarray(process.next(process.initialize(),
                                             [np.zeros(50, np.float32)]).result))
    assert not np.array_equal(draws[0], draws[1])


def test_prefix_noise_one_band_is_independent_noise_sqrt_m_times_larger() -> None:
    rounds, z = 100, 1.5
    banded = _banded(1, z, rounds)
    central = accounting.Mechanism("fixed", z, 10, 300, "uniform", 1e-6)
    t = np.arange(1, rounds + 1)
    assert accounting.prefix_noise(central, rounds) == pytest.approx(z * np.sqrt(t.mean()))
    participations = math.ceil(rounds / 30)  # each client's noise z sqrt(m) per round
    assert accounting.prefix_noise(banded, rounds) == pytest.approx(
        math.sqrt(participations) * accounting.prefix_noise(central, rounds))
    assert accounting.prefix_noise(_banded(8, z, rounds), rounds) < accounting.prefix_noise(
        banded, rounds)
    tree = accounting.Mechanism("tree", z, 10, 300, "cyclic", 1e-6)
    popcounts = [bin(i).count("1") for i in t]
    assert accounting.prefix_noise(tree, rounds) == pytest.approx(z * np.sqrt(np.mean(popcounts)))

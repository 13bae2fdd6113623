"""Privacy accounting checked against direct dp-accounting and TF Privacy calls.

Each epsilon the suite reports must equal an independent computation of the
same DP event: dp-accounting's own accountants composing the event T times,
TF Privacy's DP-SGD statement for Poisson sampling, and TF Privacy's
single-tree RDP for DP-FTRL.
"""

from __future__ import annotations

import math

import dp_accounting as dpa
import pytest
from dp_accounting.pld import pld_privacy_accountant
from tensorflow_privacy.privacy.analysis import compute_dp_sgd_privacy_lib
from tensorflow_privacy.privacy.analysis import tree_aggregation_accountant as tree

from experiments.core.errors import UsageError
from experiments.privacy import accounting

ORDERS = list(accounting._ORDERS)  # noqa: SLF001


def _mech(kind="fixed", z=1.0, k=10, n=300, sampling="poisson", delta=1e-5):
    return accounting.Mechanism(kind, z, k, n, sampling, delta)


@pytest.mark.parametrize("q_k,z,rounds", [(10, 1.0, 100), (30, 0.7, 500), (5, 2.0, 1500)])
def test_poisson_rdp_equals_direct_accountant(q_k, z, rounds):
    m = _mech(z=z, k=q_k)
    accountant = dpa.rdp.RdpAccountant(ORDERS)
    accountant.compose(dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(q_k / 300, dpa.GaussianDpEvent(z)), rounds))
    assert accounting.epsilon_rdp(m, rounds) == pytest.approx(
        accountant.get_epsilon(m.delta), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("z,rounds", [(1.0, 100), (0.8, 400)])
def test_poisson_pld_equals_direct_accountant(z, rounds):
    m = _mech(z=z)
    accountant = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(10 / 300, dpa.GaussianDpEvent(z)), rounds))
    assert accounting.epsilon_pld(m, rounds) == pytest.approx(
        accountant.get_epsilon(m.delta), rel=1e-6, abs=1e-6)


def test_uniform_sampling_is_replace_one_with_doubled_sensitivity():
    m = _mech(sampling="uniform", z=1.2)
    accountant = dpa.rdp.RdpAccountant(ORDERS, dpa.NeighboringRelation.REPLACE_ONE)
    accountant.compose(dpa.SelfComposedDpEvent(
        dpa.SampledWithoutReplacementDpEvent(300, 10, dpa.GaussianDpEvent(0.6)), 200))
    assert accounting.epsilon_rdp(m, 200) == pytest.approx(
        accountant.get_epsilon(m.delta), rel=1e-6)
    assert accounting.epsilon_pld(m, 200) is None  # no PLD event for this sampling


@pytest.mark.parametrize("n,batch,z,epochs", [(60000, 256, 1.1, 60), (300, 10, 1.0, 5),
                                              (3400, 50, 0.8, 20)])
def test_matches_tf_privacy_dp_sgd_statement(n, batch, z, epochs):
    delta = 1e-5
    reference, _ = compute_dp_sgd_privacy_lib.compute_dp_sgd_privacy(
        n=n, batch_size=batch, noise_multiplier=z, epochs=epochs, delta=delta)
    steps = int(math.ceil(epochs * n / batch))
    ours = accounting.epsilon_rdp(_mech(z=z, k=batch, n=n, delta=delta), steps)
    # Same event and accountant; our RDP orders are a finer grid than TF Privacy's,
    # so our bound may only be (slightly) tighter, never looser.
    assert reference * 0.97 <= ours <= reference + 1e-9


def test_tree_matches_tf_privacy_single_tree():
    m = _mech(kind="tree", sampling="cyclic", z=1.5)
    rounds = 75  # 2.5 passes of 30 rounds
    rdp = tree.compute_rdp_single_tree(1.5, rounds, max_participation=3,
                                       min_separation=29, orders=ORDERS)
    expected = dpa.rdp.compute_epsilon(ORDERS, rdp, m.delta)[0]
    assert accounting.epsilon_rdp(m, rounds) == pytest.approx(expected, rel=1e-9)


def test_local_dp_composes_over_participations_without_amplification():
    m = _mech(kind="local", sampling="uniform", z=4.0)
    accountant = dpa.rdp.RdpAccountant(ORDERS, dpa.NeighboringRelation.REPLACE_ONE)
    accountant.compose(dpa.GaussianDpEvent(2.0), 7)
    assert accounting.epsilon_rdp(m, 100, participations=7) == pytest.approx(
        accountant.get_epsilon(m.delta), rel=1e-6)


def test_epsilon_grows_with_rounds_and_falls_with_noise():
    eps = [accounting.epsilon_rdp(_mech(z=z), 200) for z in (0.5, 1.0, 2.0)]
    assert eps[0] > eps[1] > eps[2]
    assert accounting.epsilon_rdp(_mech(), 10) < accounting.epsilon_rdp(_mech(), 100)
    assert accounting.epsilon_rdp(_mech(z=0.0), 10) == math.inf


@pytest.mark.parametrize("sampling", ["poisson", "uniform"])
def test_calibration_picks_the_smallest_sufficient_noise(sampling):
    m = _mech(sampling=sampling)
    z = accounting.calibrate(m, 300, target_epsilon=4.0)
    at = accounting.epsilon_rdp(accounting.Mechanism(**{**m.__dict__, "noise_multiplier": z}), 300)
    below = accounting.epsilon_rdp(
        accounting.Mechanism(**{**m.__dict__, "noise_multiplier": z * 0.995}), 300)
    assert at <= 4.0 < below


def test_unreachable_target_is_a_usage_error():
    with pytest.raises(UsageError, match="unreachable"):
        accounting.calibrate(_mech(sampling="uniform", n=10, k=10), 10**6, 1e-6)


def test_default_delta_is_below_one_over_population():
    assert accounting.default_delta(300) == pytest.approx(300 ** -1.1)
    assert accounting.default_delta(300) < 1 / 300


@pytest.mark.parametrize("kwargs,message", [
    ({"z": -1.0}, "noise_multiplier"),
    ({"delta": 0.0}, "delta"),
    ({"k": 301}, "clients_per_round"),
    ({"kind": "tree", "sampling": "poisson"}, "cyclic"),
    ({"sampling": "cyclic"}, "cyclic"),
])
def test_bad_mechanisms_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message):
        accounting.check(_mech(**kwargs))

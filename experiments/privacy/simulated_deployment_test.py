"""A deployment simulated on fewer clients: its noise, its accounting, its refusals.

With --noise_cohort_size=C the average update of the K clients actually trained
on gets the noise a deployment averaging C clients would get (std z clip / C);
with --simulated_population=N the accountant assumes C-client rounds drawn from
N (McMahan et al. 2018). Checked against a noise-variance estimate and a direct
dp-accounting computation.
"""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pytest
import tensorflow_federated as tff

from experiments import config as config_lib
from experiments.aggregators import chain
from experiments.aggregators.chain_test import DIM, _assert_noise, _dp_config
from experiments.core import tff_worker
from experiments.core.errors import UsageError
from experiments.core.settings import pick
from experiments.privacy import accounting
from experiments.privacy.settings import DpSettings


@pytest.fixture(scope="module")
def worker():
    with tff_worker.session():
        yield


def _average_noise(config: config_lib.ExperimentConfig, calls: int = 10) -> np.ndarray:
    process = chain.build(chain.ChainSettings.of(config)).create(
        tff.TensorType(np.float32, [DIM]))
    state, zeros, draws = process.initialize(), [np.zeros(DIM, np.float32)] * 4, []
    for _ in range(calls):
        output = process.next(state, zeros)
        state = output.state
        draws.append(np.asarray(output.result, np.float64))
    return np.stack(draws)


@pytest.mark.parametrize("cohort", [40, 1000])
def test_average_gets_the_noise_of_the_simulated_cohort(worker, cohort):
    z, clip, k = 1.5, 0.5, 4
    config = _dp_config(noise_multiplier=z, clip=clip, clients_per_round=k,
                        noise_cohort_size=cohort, simulated_population=10**6)
    _assert_noise(_average_noise(config), z * clip / cohort,
                  wrong={"the real cohort's z clip / K": z * clip / k})


def test_without_simulation_the_real_cohorts_noise_is_kept(worker):
    z, clip, k = 1.5, 0.5, 4
    _assert_noise(_average_noise(_dp_config(noise_multiplier=z, clip=clip,
                                            clients_per_round=k)), z * clip / k, wrong={})


@pytest.mark.parametrize("sampling, event", [
    ("poisson", lambda z: dpa.PoissonSampledDpEvent(1000 / 10**6, dpa.GaussianDpEvent(z))),
    ("uniform", lambda z: dpa.SampledWithoutReplacementDpEvent(
        10**6, 1000, dpa.GaussianDpEvent(z / 2))),
])
def test_epsilon_is_the_simulated_deployments(sampling, event):
    dp = DpSettings(dp="fixed", noise_multiplier=0.8, noise_cohort_size=1000,
                    simulated_population=10**6)
    m = accounting.mechanism(dp, clients_per_round=30, sampling=sampling, population=300)
    assert (m.population, m.clients_per_round, m.simulated) == (10**6, 1000, True)
    assert m.delta == pytest.approx(1e6 ** -1.1)
    relation = (dpa.NeighboringRelation.REPLACE_ONE if sampling == "uniform"
                else dpa.NeighboringRelation.ADD_OR_REMOVE_ONE)
    direct = dpa.rdp.RdpAccountant(list(accounting._ORDERS), relation)  # noqa: SLF001
    direct.compose(event(0.8), 150)
    assert accounting.epsilon_rdp(m, 150) == pytest.approx(
        direct.get_epsilon(m.delta), rel=1e-9)
    if sampling == "poisson":
        pld = dpa.pld.PLDAccountant(dpa.NeighboringRelation.ADD_OR_REMOVE_ONE,
                                    value_discretization_interval=1e-4)
        pld.compose(event(0.8), 150)
        assert accounting.epsilon_pld(m, 150) == pytest.approx(
            pld.get_epsilon(m.delta), rel=1e-3)


def test_the_real_population_is_accounted_without_simulation():
    m = accounting.mechanism(pick(DpSettings, _dp_config(noise_multiplier=0.8)), 30,
                             "poisson", 300)
    assert (m.population, m.clients_per_round, m.simulated) == (300, 30, False)
    assert not math.isclose(m.delta, 1e6 ** -1.1)


@pytest.mark.parametrize("overrides, message", [
    (dict(noise_cohort_size=1000), "--noise_cohort_size needs --simulated_population"),
    (dict(dp="local", simulated_population=10**6), "applies to central DP"),
    (dict(noise_cohort_size=2000, simulated_population=1000), "must be at most"),
    (dict(simulated_population=10**6, availability=0.5), "cannot be combined with"),
    (dict(simulated_population=10**6, over_selection=0.2), "cannot be combined with"),
    (dict(dp="none", noise_multiplier=0.0, simulated_population=10**6),
     "--simulated_population needs a DP mechanism"),
    (dict(simulated_population=-1), "--simulated_population=-1 must be"),
])
def test_what_the_simulation_cannot_stand_for_is_refused_in_one_line(overrides, message):
    with pytest.raises(UsageError) as info:
        config_lib.validate(_dp_config(**overrides))
    assert message in str(info.value) and "\n" not in str(info.value)

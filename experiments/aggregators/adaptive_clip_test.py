"""Adaptive clipping (Andrew et al. 2021) as the aggregator chain builds it.

With noise 0 the clip follows the geometric rule exactly and settles at the
target quantile; with noise the value noise is TFF's inflated multiplier
(z^-2 - (2 sigma_c)^-2)^-1/2 and the per-round DP event composes to exactly
a Gaussian of the configured z, which is what the accountant charges; an
infeasible z is a UsageError naming --clipped_count_stddev. The statistical
checks are chain_test.py's (false-alarm probability 1e-6 each).
"""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pytest

from experiments.aggregators import chain
from experiments.aggregators.chain_test import (  # noqa: F401 (fixtures)
    CALLS,
    DIM,
    _assert_noise,
    _clipped,
    _dp_config,
    _flat,
    _process,
    _session,
    tff,
)
from experiments.core.errors import UsageError
from experiments.privacy import accounting
from experiments.training import federated_trainer


def _clip_of(measurements) -> float:
    """The clip as the suite's metrics extraction reads it."""
    found = federated_trainer._dp_measurements({"aggregator": measurements})  # noqa: SLF001
    assert "dp_clip" in found, measurements
    return found["dp_clip"]


def test_adaptive_clip_follows_the_geometric_rule_to_the_target_quantile(tff) -> None:  # noqa: F811
    lr, target, initial = 0.2, 0.5, 0.1
    config = _dp_config(dp="adaptive", noise_multiplier=0.0, initial_clip=initial,
                        target_unclipped_quantile=target, adaptive_clip_learning_rate=lr)
    d = 6
    process, state = _process(tff, config, tff.TensorType(np.float32, [d]))
    # All four clients at norm 5 > clip: nothing is unclipped, so each round
    # the clip grows by exactly exp(lr * target), and the aggregate is the
    # update clipped to the clip in force before the round.
    update = np.full(d, 5.0 / math.sqrt(d), np.float32)
    clip = initial
    for _ in range(8):
        output = process.next(state, [update] * 4)
        state = output.state
        np.testing.assert_allclose(_flat(output.result), _flat(_clipped([update], clip)),
                                   rtol=1e-5)
        new_clip = _clip_of(output.measurements)
        assert new_clip == pytest.approx(clip * math.exp(lr * target), rel=1e-5)
        clip = new_clip
    # Half the clients at norm 1, half at 10: the clip rises until it passes 1,
    # then the unclipped fraction is the target and it stays put, at the median.
    mixed = [np.full(d, n / math.sqrt(d), np.float32) for n in (1.0, 1.0, 10.0, 10.0)]
    clips = []
    for _ in range(30):
        output = process.next(state, mixed)
        state = output.state
        clips.append(_clip_of(output.measurements))
    assert all(b > a for a, b in zip(clips, clips[1:], strict=False) if a < 1.0)
    assert 1.0 <= clips[-1] < 10.0
    assert clips[-5:] == [clips[-1]] * 5, f"clip did not settle: {clips}"


def test_adaptive_noise_and_accounting_with_a_valid_setting(tff) -> None:  # noqa: F811
    z, k, initial, d = 0.8, 10, 0.1, DIM
    config = _dp_config(dp="adaptive", noise_multiplier=z, clients_per_round=k,
                        initial_clip=initial)
    process, state = _process(tff, config, tff.TensorType(np.float32, [d]))
    count_stddev = 0.05 * k  # the default --clipped_count_stddev
    value_z = (z**-2 - (2 * count_stddev) ** -2) ** -0.5  # 4/3 here, above z
    unit = np.full(d, 1 / math.sqrt(d), np.float32)
    clip, clips, scaled_noise = initial, [initial], []
    for _ in range(CALLS):
        output = process.next(state, [5.0 * unit] * k)  # all clipped: clip grows
        state = output.state
        # Signal: the update clipped to the clip in force; the rest is noise of
        # std value_z * clip / K, so (result - signal) / clip has std value_z / K.
        scaled_noise.append((_flat(output.result) - clip * _flat(unit)) / clip)
        clip = _clip_of(output.measurements)
        clips.append(clip)
    _assert_noise(np.stack(scaled_noise), value_z / k,
                  wrong={"z/K (no inflation for the count noise)": z / k})
    assert all(b > a for a, b in zip(clips, clips[1:], strict=False)), clips
    assert clips[-1] > 2 * initial
    # The round's DP event (value noise + clipped-count noise) composes to a
    # Gaussian of the configured z: the accountant charges exactly that.
    event = dpa.DpEvent.from_named_tuple(state.dp_event)
    orders = list(accounting._ORDERS)  # noqa: SLF001
    ours, theirs = dpa.rdp.RdpAccountant(orders), dpa.rdp.RdpAccountant(orders)
    ours.compose(event)
    theirs.compose(dpa.GaussianDpEvent(z))
    assert ours.get_epsilon(1e-5) == pytest.approx(theirs.get_epsilon(1e-5), rel=1e-6)


def test_adaptive_noise_too_large_for_the_cohort_is_a_usage_error(tff) -> None:  # noqa: F811
    # TFF needs z < 2 * clipped_count_stddev (default 0.05 * K = 0.5 at K=10).
    with pytest.warns(UserWarning, match="significant amount of noise"):  # TFF: 7x
        chain.build(chain.ChainSettings.of(_dp_config(
            dp="adaptive", noise_multiplier=0.99, clients_per_round=10)))
    with pytest.raises(UsageError) as error:
        chain.build(chain.ChainSettings.of(_dp_config(
            dp="adaptive", noise_multiplier=1.0, clients_per_round=10)))
    message = str(error.value)
    assert "--clipped_count_stddev" in message and "\n" not in message
    assert "--noise_multiplier=1.0" in message
    chain.build(chain.ChainSettings.of(_dp_config(
        dp="adaptive", noise_multiplier=1.0, clients_per_round=10, clipped_count_stddev=0.6)))

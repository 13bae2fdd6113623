"""What secure aggregation promises: the server learns the sum and no single update.

The server's view is everything it receives (`secure_sum.ServerView`): the
public keys, the masked inputs (one of them late), and the Shamir shares the
survivors reveal. `_server_estimates` removes every mask the server can rebuild
from that view; no client's update may come out, before or after dropouts, and
a client that arrives late (after its pairwise masks were recovered for its
dropout) stays hidden behind its self mask.

Each check also runs against copies of the protocol with one mask layer
removed (`secure_sum.self_mask` or `secure_sum.pair_mask` patched to zero in
both the clients and the server), where it must find the leak: a test that
passes against a broken protocol proves nothing. The tests in
secure_sum_test.py (uniform, uncorrelated masked vectors, exact sums) pass
against both broken copies, which is why these exist.
"""

from __future__ import annotations

import numpy as np
import pytest

from experiments.aggregators import secure_sum as sa

N, SIZE, BITS, THRESHOLD = 6, 400, 10, 3
SCENARIOS = {
    "no_dropout": {},
    "dropout_before_input": {"drop_before_input": [2]},
    "dropout_before_unmask": {"drop_before_unmask": [4]},
    "late_arrival": {"arrive_late": [1]},
}
# Which scenarios expose someone when a mask layer is missing: without pairwise
# masks the server strips the self mask of every input in the sum; without self
# masks only a client whose pairwise masks the server rebuilt (a late one) is bare.
LEAKS = {
    "pair_mask": {"no_dropout", "dropout_before_input", "dropout_before_unmask",
                  "late_arrival"},
    "self_mask": {"late_arrival"},
}


def _inputs(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    levels = 2 ** (BITS - 1) - 1
    return [rng.integers(-levels, levels + 1, size=SIZE) for _ in range(N)]


def _server_estimates(view: sa.ServerView) -> dict[int, np.ndarray]:
    """Each masked input the server holds, minus every mask it can rebuild."""
    m, size = view.modulus_bits, view.size
    seeds = {u: sa.shamir_reconstruct(s) for u, s in view.self_seed_shares.items()}
    keys = {v: sa.shamir_reconstruct(s) for v, s in view.secret_key_shares.items()}
    estimates = {}
    for u, y in view.masked.items():
        z = np.asarray(y, np.uint64).copy()
        if u in seeds:
            z -= sa.self_mask(seeds[u], size, m)
        for v in view.public_keys:
            if v == u:
                continue
            if v in keys:
                secret = sa.agree(keys[v], view.public_keys[u])
            elif u in keys:
                secret = sa.agree(keys[u], view.public_keys[v])
            else:
                continue  # s_uv is unknown to the server: this mask stays on
            mask = sa.pair_mask(secret, size, m)
            if v > u:  # u added +PRG(s_uv) for v > u, -PRG(s_uv) for v < u
                z -= mask
            else:
                z += mask
        if m < 64:
            z &= np.uint64((1 << m) - 1)
        estimates[u] = sa.from_ring(z, m)
    return estimates


def _exposed(scenario: str) -> list[int]:
    """Clients whose update the server reads off its view (most coordinates right)."""
    inputs = _inputs()
    out = sa.run(inputs, bits=BITS, threshold=THRESHOLD, seed=11, **SCENARIOS[scenario])
    return sorted(u for u, estimate in _server_estimates(out.view).items()
                  if np.mean(estimate == inputs[u]) > 0.5)


def _without(monkeypatch, layer: str) -> None:
    """Patches the protocol (clients and server alike) to add and remove no `layer`."""
    monkeypatch.setattr(sa, layer, lambda seed, size, m: np.zeros(size, np.uint64))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_single_update_can_be_read_from_the_servers_view(scenario):
    assert _exposed(scenario) == []


def test_the_view_holds_what_the_server_receives():
    out = sa.run(_inputs(), bits=BITS, threshold=THRESHOLD, seed=11, arrive_late=[1],
                 drop_before_input=[2])
    view = out.view
    assert sorted(view.masked) == [0, 1, 3, 4, 5]  # the late input arrived, 2's never did
    assert 1 not in out.included and sorted(view.secret_key_shares) == [1, 2]
    assert sorted(view.self_seed_shares) == [0, 3, 4, 5]
    assert not set(view.self_seed_shares) & set(view.secret_key_shares)  # never both


def test_the_attack_reads_a_bare_update():
    # The estimator itself works: with both layers gone every update is read off.
    with pytest.MonkeyPatch.context() as patch:
        _without(patch, "self_mask")
        _without(patch, "pair_mask")
        assert _exposed("no_dropout") == list(range(N))


@pytest.mark.parametrize("layer", sorted(LEAKS))
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_check_fails_against_a_protocol_without_a_mask_layer(monkeypatch, layer,
                                                                    scenario):
    _without(monkeypatch, layer)
    exposed = _exposed(scenario)
    if scenario in LEAKS[layer]:
        assert exposed, f"without {layer} the server should read an update ({scenario})"
        with pytest.raises(AssertionError):
            test_no_single_update_can_be_read_from_the_servers_view(scenario)
    else:
        assert exposed == []


def test_every_mutant_is_caught_by_some_scenario():
    assert all(LEAKS.values())

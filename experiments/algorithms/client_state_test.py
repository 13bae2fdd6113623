"""The client-state store: lazy creation, isolation, checkpoint layout, memory budget."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.algorithms.client_state import ClientStates, check_budget, describe
from experiments.core.errors import UsageError

INITIAL = [np.zeros((3, 2), np.float32), np.ones(2, np.float32)]


def test_a_client_starts_from_the_initial_state_and_keeps_its_own():
    store = ClientStates(INITIAL)
    first = store.get(7)
    first[0] += 5.0  # a caller's copy: the store is unchanged until put()
    np.testing.assert_array_equal(store.get(7)[0], INITIAL[0])
    assert len(store) == 0
    store.put(7, first)
    np.testing.assert_array_equal(store.get(7)[0], INITIAL[0] + 5.0)
    np.testing.assert_array_equal(store.get(3)[0], INITIAL[0])  # others untouched
    assert len(store) == 1 and store.bytes_per_client == 4 * (6 + 2)
    with pytest.raises(ValueError):
        store.put(1, [np.zeros(3)])


def test_checkpoint_layout_round_trips_and_refuses_another_shape():
    store = ClientStates(INITIAL)
    for client in (9, 2):
        store.put(client, [np.full((3, 2), client, np.float32), np.full(2, -client,
                                                                        np.float32)])
    arrays = store.to_arrays()
    assert arrays[0].tolist() == [2, 9] and arrays[1].shape == (2, 3, 2)
    restored = ClientStates(INITIAL).from_arrays(arrays)
    for client in (2, 9):
        for a, b in zip(restored.get(client), store.get(client), strict=True):
            np.testing.assert_array_equal(a, b)
    assert [a.shape for a in ClientStates(INITIAL).to_arrays()] == [(0,), (0, 3, 2), (0, 2)]
    with pytest.raises(UsageError, match="client states do not match"):
        ClientStates([np.zeros(4, np.float32)]).from_arrays(arrays)


def test_a_population_whose_states_do_not_fit_is_refused_in_one_line():
    check_budget("--algorithm=scaffold", 1024 ** 2, 100, budget_mb=100)  # exactly fits
    with pytest.raises(UsageError) as caught:
        check_budget("--algorithm=scaffold", 1024 ** 2, 101, budget_mb=100)
    message = str(caught.value)
    assert "\n" not in message and "--memory_budget_mb=100" in message
    assert "1.00 MiB of state per client, 101 MiB for 101 clients" in message
    assert describe("x", 2 * 1024 ** 2, 10)["client_state_mib_at_most"] == 20.0

"""Tests of canary planning, insertion and exposure (Carlini et al. 2019)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments import canaries
from experiments.errors import UsageError
from tasks.sql_client_data import InMemoryClientData

C = 62


def _data(clients: int = 8, per_client: int = 5) -> InMemoryClientData:
    rng = np.random.default_rng(3)
    x = rng.random((clients * per_client, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, C, size=clients * per_client).astype(np.int32)
    return InMemoryClientData([f"c{i}" for i in range(clients)], x, y, [per_client] * clients)


def test_exposure_known_answers():
    # Canary best of 1 + 1023 candidates: log2(1024) - log2(1) = 10 bits.
    assert canaries.exposure(0.1, np.linspace(1, 2, 1023)) == pytest.approx(10.0)
    # Worst of 1 + 1023: rank 1024, exposure 0.
    assert canaries.exposure(5.0, np.linspace(1, 2, 1023)) == pytest.approx(0.0)
    # 3 candidates below it of 7 (R = 8): rank 4, exposure log2 8 - log2 4 = 1.
    assert canaries.exposure(0.5, [0.1, 0.2, 0.3, 0.9, 1.0, 1.1, 1.2]) == pytest.approx(1.0)
    # Ties count in the canary's favour.
    assert canaries.exposure(1.0, [1.0, 1.0, 2.0]) == pytest.approx(2.0)


def test_exposures_rank_labels_by_model_loss():
    data = _data()
    planted = canaries.plan(data, C, 2, seed=0)
    logits = np.zeros((len(planted), C))
    logits[0, planted[0].label] = 5.0  # the model prefers the secret: rank 1
    logits[1, :10] = 3.0  # ten labels beat the secret (if it is not among them)
    records = canaries.exposures(lambda images: logits, data, planted)
    assert records[0]["rank"] == 1
    assert records[0]["exposure"] == pytest.approx(math.log2(C))
    beaten = 10 - int(planted[1].label < 10)
    ties = C - 10 - 1 + int(planted[1].label < 10)  # equal losses do not count against it
    assert records[1]["rank"] == 1 + beaten and ties > 0
    assert records[1]["exposure"] == pytest.approx(math.log2(C) - math.log2(1 + beaten))


def test_plan_is_seeded_with_distinct_clients_and_wrong_labels():
    data = _data()
    planted = canaries.plan(data, C, 3, seed=5)
    assert planted == canaries.plan(data, C, 3, seed=5)
    assert planted != canaries.plan(data, C, 3, seed=6)
    assert len({c.client_id for c in planted}) == 6
    assert [c.inserted for c in planted] == [True] * 3 + [False] * 3
    for c in planted:
        assert c.label != c.true_label
        assert c.true_label == int(data.arrays(c.client_id)[1][c.example])
    with pytest.raises(UsageError, match="--canaries=5 needs 10 training clients"):
        canaries.plan(data, C, 5, seed=0)


def test_insertion_adds_repeats_to_inserted_clients_only():
    data = _data()
    planted = canaries.plan(data, C, 2, seed=1)
    planted_data = canaries.with_canaries(data, planted, repeats=7)
    by_client = {c.client_id: c for c in planted}
    for client in data.client_ids:
        x0, y0 = data.arrays(client)
        x1, y1 = planted_data.arrays(client)
        np.testing.assert_array_equal(x1[:len(y0)], x0)
        np.testing.assert_array_equal(y1[:len(y0)], y0)
        c = by_client.get(client)
        if c is not None and c.inserted:
            assert len(y1) == len(y0) + 7
            np.testing.assert_array_equal(y1[len(y0):], np.full(7, c.label))
            np.testing.assert_array_equal(x1[len(y0):], np.repeat(x0[c.example][None], 7, 0))
        else:
            assert len(y1) == len(y0)
    total = sum(planted_data.num_examples(c) for c in planted_data.client_ids)
    assert total == 8 * 5 + 2 * 7

"""Tests of canary planning, insertion and exposure (Carlini et al. 2019)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.core.errors import UsageError
from experiments.privacy import canaries
from tasks.client_arrays import ArrayClientData

C = 62


def _data(clients: int = 8, per_client: int = 5) -> ArrayClientData:
    rng = np.random.default_rng(3)
    x = rng.random((clients * per_client, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, C, size=clients * per_client).astype(np.int32)
    return ArrayClientData([f"c{i}" for i in range(clients)], x, y, [per_client] * clients)


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


def _split_inserted(x0, y0, x1, y1):
    """Rows of (x1, y1) that are not, in order, the original rows (x0, y0)."""
    kept, extra, i = [], [], 0
    for row in range(len(y1)):
        if i < len(y0) and np.array_equal(x1[row], x0[i]) and np.array_equal(y1[row], y0[i]):
            kept.append(row)
            i += 1
        else:
            extra.append(row)
    assert i == len(y0), "the client's own rows must all be kept, in order"
    return extra


def test_insertion_adds_repeats_to_inserted_clients_only():
    data = _data(per_client=30)
    planted = canaries.plan(data, C, 2, seed=1)
    planted_data = canaries.with_canaries(data, planted, repeats=7, seed=1)
    by_client = {c.client_id: c for c in planted}
    for client in data.client_ids:
        x0, y0 = data.arrays(client)
        x1, y1 = planted_data.arrays(client)
        c = by_client.get(client)
        if c is not None and c.inserted:
            assert len(y1) == len(y0) + 7
            extra = _split_inserted(x0, y0, x1, y1)
            np.testing.assert_array_equal(y1[extra], np.full(7, c.label))
            np.testing.assert_array_equal(x1[extra], np.repeat(x0[c.example][None], 7, 0))
            # Seeded positions spread through the data, not all at the end, so a
            # --max_elements_per_client cap keeps a share of them.
            assert min(extra) < len(y0)
        else:
            np.testing.assert_array_equal(x1, x0)
            np.testing.assert_array_equal(y1, y0)
    again = canaries.with_canaries(data, planted, repeats=7, seed=1)
    np.testing.assert_array_equal(again.arrays(planted[0].client_id)[1],
                                  planted_data.arrays(planted[0].client_id)[1])


# Text canaries, on a character "task": ids are byte values + 1 (0 is padding), rows of
# width 40; x is a row but its last id, y a row but its first (as the text tasks do).
WIDTH = 40


def _encode(texts):
    rows = np.zeros((len(texts), WIDTH + 1), dtype=np.int32)
    for i, text in enumerate(texts):
        ids = np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int32) + 1
        rows[i, :len(ids)] = ids
    return rows[:, :-1], rows[:, 1:]


def _text_data(clients: int = 8, per_client: int = 6) -> ArrayClientData:
    x, y = _encode([f"line {i} of the play" for i in range(clients * per_client)])
    return ArrayClientData([f"c{i}" for i in range(clients)], x, y,
                              [per_client] * clients)


def test_text_plan_is_seeded_with_distinct_clients_and_digit_secrets():
    data = _text_data()
    planted = canaries.plan_text(data, 3, seed=4)
    assert planted == canaries.plan_text(data, 3, seed=4)
    assert planted != canaries.plan_text(data, 3, seed=5)
    assert len({c.client_id for c in planted}) == 6
    assert len({c.secret for c in planted}) == 6
    assert [c.inserted for c in planted] == [True] * 3 + [False] * 3
    for c in planted:
        digits = c.secret.split(" ")
        assert len(digits) == canaries.SECRET_DIGITS and all(d in "0123456789" for d in digits)
        assert c.text == "my secret number is " + c.secret


def test_text_insertion_writes_the_sentence_through_the_task_encoder():
    data = _text_data()
    planted = canaries.plan_text(data, 2, seed=0)
    planted_data = canaries.with_text_canaries(data, planted, 5, _encode, seed=0)
    for c in planted:
        x0, y0 = data.arrays(c.client_id)
        x1, y1 = planted_data.arrays(c.client_id)
        if not c.inserted:
            np.testing.assert_array_equal(x1, x0)
            continue
        extra = _split_inserted(x0, y0, x1, y1)
        assert len(extra) == 5
        text = bytes(int(v) - 1 for v in np.append(x1[extra[0]][:1], y1[extra[0]]) if v)
        assert text.decode() == c.text


def test_candidates_are_distinct_random_secrets_other_than_the_canary():
    canary = canaries.plan_text(_text_data(), 1, seed=0)[0]
    found = canaries.candidate_secrets(canary, 500, seed=0)
    assert len(set(found)) == 500 and canary.secret not in found
    assert all(len(s.split(" ")) == canaries.SECRET_DIGITS for s in found)
    assert found == canaries.candidate_secrets(canary, 500, seed=0)


def _zero_loving_model(x: np.ndarray) -> np.ndarray:
    """Logits over 256 ids that favour the id of '0' after every token (5 nats)."""
    logits = np.zeros((*x.shape, 256))
    logits[..., ord("0") + 1] = 5.0
    return logits


def test_text_exposure_is_the_rank_by_log_perplexity():
    # Under a model that favours '0' everywhere, a digit string's loss falls with its
    # number of zeros; the rank is 1 + candidates with more zeros (ties count for the
    # canary), computed here by counting, independently of the model.
    planted = canaries.plan_text(_text_data(), 2, seed=2)
    records = canaries.text_exposures(_zero_loving_model, _encode, planted,
                                      candidates=300, seed=2)
    for c, r in zip(planted, records, strict=True):
        zeros = c.secret.count("0")
        more = sum(s.count("0") > zeros for s in canaries.candidate_secrets(c, 300, 2))
        assert r["rank"] == 1 + more
        assert r["exposure"] == pytest.approx(math.log2(301) - math.log2(1 + more))


def test_sequence_losses_sum_cross_entropy_over_real_targets():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7))
    y = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 1, 2]])
    expected = []
    for row in range(2):
        p = np.exp(logits[row]) / np.exp(logits[row]).sum(-1, keepdims=True)
        expected.append(sum(-np.log(p[t, y[row, t]]) for t in range(5) if y[row, t] != 0))
    np.testing.assert_allclose(canaries.sequence_losses(lambda x: logits, y, y), expected)


def test_text_canaries_need_every_digit_in_the_vocabulary():
    def digitless(texts):
        x, y = _encode([t.translate(str.maketrans("0123456789", "##########"))
                        for t in texts])
        return x, y

    canaries.check_text_encoding(_encode)
    with pytest.raises(UsageError, match="the ten digits 0-9 in the vocabulary"):
        canaries.check_text_encoding(digitless)


def test_fitted_exposure_extrapolates_beyond_the_sampled_candidates():
    # Candidates' losses ~ N(10, 2): a canary at 2 (z = -4) lies beyond 1,000 samples,
    # whose sampled exposure saturates at log2 1001; the fit estimates -log2 Phi(-4).
    from scipy import stats
    losses = np.random.default_rng(0).normal(10.0, 2.0, 1000)
    expected = -stats.norm.logcdf(-4.0) / math.log(2)  # 14.9 bits
    assert canaries.exposure(2.0, losses) == pytest.approx(math.log2(1001))
    assert canaries.fitted_exposure(2.0, losses, 1e6) == pytest.approx(expected, abs=1.0)
    assert canaries.fitted_exposure(10.0, losses, 1e6) == pytest.approx(1.0, abs=0.2)
    assert canaries.fitted_exposure(-50.0, losses, 1e6) == pytest.approx(math.log2(1e6))

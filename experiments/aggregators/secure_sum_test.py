"""Tests of the secure aggregation simulation: masks, exact sums, dropouts, threshold."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from experiments.aggregators import secure_sum as sa


def _inputs(n: int, size: int, bits: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    levels = 2 ** (bits - 1) - 1
    return [rng.integers(-levels, levels + 1, size=size) for _ in range(n)]


def test_shamir_reconstructs_from_any_t_shares_and_not_fewer():
    rng = np.random.default_rng(1)
    secret = 123456789012345678901234567890
    shares = sa.shamir_split(secret, t=3, n=6, rng=rng)
    assert sa.shamir_reconstruct([shares[0], shares[2], shares[5]]) == secret
    assert sa.shamir_reconstruct(shares[3:]) == secret
    assert sa.shamir_reconstruct(shares[:2]) != secret  # t-1 shares say nothing


def test_key_agreement_is_symmetric():
    rng = np.random.default_rng(2)
    a, b = sa._Client(0, rng), sa._Client(1, rng)
    assert sa.agree(a.secret_key, b.public_key) == sa.agree(b.secret_key, a.public_key)


def test_sum_is_exact_including_wraparound_of_negative_values():
    inputs = _inputs(n=7, size=1000, bits=12)
    out = sa.run(inputs, bits=12, threshold=4, seed=3)
    np.testing.assert_array_equal(out.total, np.sum(inputs, axis=0))
    assert out.included == list(range(7))
    assert out.modulus_bits == 12 + 3


def test_masked_vectors_are_uniform_and_independent_of_the_update():
    bits, size = 8, 20_000
    m = sa.modulus_bits(bits, 5)
    constant = [np.full(size, 100, np.int64)] * 5  # maximally non-uniform inputs
    out = sa.run(constant, bits=bits, threshold=3, seed=4)
    y = out.masked[0].astype(np.int64)
    # Uniform mod 2^m: chi-square over 64 equal bins.
    counts = np.bincount(y >> (m - 6), minlength=64)
    assert stats.chisquare(counts).pvalue > 1e-3
    # Independent of the update: a ramp input does not correlate with its masked vector.
    ramp = [np.arange(size) % 100 for _ in range(5)]
    out = sa.run(ramp, bits=bits, threshold=3, seed=5)
    r = np.corrcoef(ramp[1], out.masked[1].astype(np.float64))[0, 1]
    assert abs(r) < 4 / np.sqrt(size)
    # And the unmasked sum is still exact.
    np.testing.assert_array_equal(out.total, np.sum(ramp, axis=0))


def test_dropout_after_key_sharing_is_recovered_exactly():
    inputs = _inputs(n=8, size=500, bits=16, seed=6)
    out = sa.run(inputs, bits=16, threshold=5, seed=7, drop_before_input=[2, 6])
    assert out.included == [0, 1, 3, 4, 5, 7]
    np.testing.assert_array_equal(out.total, np.sum([inputs[u] for u in out.included], 0))
    # The masked vectors alone do not sum to it: recovery was needed.
    raw = sa.from_ring(np.sum([out.masked[u] for u in out.included], 0)
                       & np.uint64((1 << out.modulus_bits) - 1), out.modulus_bits)
    assert not np.array_equal(raw, out.total)


def test_dropout_after_masked_input_keeps_the_input():
    inputs = _inputs(n=6, size=300, bits=10, seed=8)
    out = sa.run(inputs, bits=10, threshold=3, seed=9, drop_before_input=[0],
                 drop_before_unmask=[4, 5])
    np.testing.assert_array_equal(out.total, np.sum(inputs[1:], axis=0))


@pytest.mark.parametrize("before_input, before_unmask", [([0, 1, 2, 3], []), ([0], [1, 2, 3])])
def test_below_threshold_fails_with_one_line(before_input, before_unmask):
    inputs = _inputs(n=6, size=10, bits=8)
    with pytest.raises(sa.SecureAggregationError) as err:
        sa.run(inputs, bits=8, threshold=3, seed=0, drop_before_input=before_input,
               drop_before_unmask=before_unmask)
    assert "threshold t=3" in str(err.value) and "\n" not in str(err.value)


def test_cost_counts_keys_shares_masked_input_and_unmasking():
    n, size, bits = 5, 100, 16
    out = sa.run(_inputs(n, size, bits), bits=bits, threshold=3, seed=0)
    m = out.modulus_bits
    per_client = sa.FIELD_BITS + 2 * sa.FIELD_BITS * (n - 1) + m * size + sa.FIELD_BITS * (n - 1)
    assert out.cost.upload_bits == [per_client] * n
    assert out.cost.messages == 2 * n + 2 * n + 2 * n + n


def test_quantisation_is_unbiased_and_within_one_step():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, size=200_000)
    q = sa.quantise(x, bits=8, clip=1.0, rng=rng)
    back = sa.dequantise(q, bits=8, clip=1.0)
    step = 1.0 / 127
    assert np.max(np.abs(back - x)) <= step + 1e-12
    assert abs(np.mean(back - x)) < 3 * step / np.sqrt(x.size)
    assert np.all(np.abs(sa.quantise(np.array([5.0, -5.0]), 8, 1.0, rng)) == 127)


def test_threshold_count():
    assert sa.threshold_count(0.6, 10) == 6
    assert sa.threshold_count(0.5, 10) == 5
    assert sa.threshold_count(1.0, 3) == 3
    assert sa.threshold_count(0.01, 3) == 1

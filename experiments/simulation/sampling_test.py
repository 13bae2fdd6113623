"""Checks that client sampling is uniform, without replacement and reproducible.

Every federated result depends on which clients train in each round. The
sampler must (1) never pick a client twice in a round, (2) be a pure function
of (seed, round) so that a resumed run re-samples exactly what an
uninterrupted one would, (3) change from round to round, and (4) be uniform:
each client's inclusion frequency over many rounds must match
clients_per_round / population, and every subset must be equally likely (a
sampler can get the marginals right and the joint law wrong, e.g. by taking
a random block of consecutive clients). The statistical checks run on fixed
seeds, so they are deterministic; their thresholds are loose enough for any
correct sampler and a control shows they reject a biased one.

The privacy accountant's assumptions are checked here too: Poisson inclusion
rates match q = K/N per client and cohort sizes follow Binomial(N, q); cyclic
cohorts are disjoint within a pass and each client recurs exactly every
N // K rounds (the tree accountant's min_separation and max_participation).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from experiments.privacy import accounting
from experiments.simulation import sampling

Sampler = Callable[[int, int, int, int], np.ndarray]


@pytest.mark.parametrize("population,k", [(6, 1), (6, 3), (6, 6), (50, 10), (300, 10)])
def test_sample_is_without_replacement_sorted_and_in_range(population: int, k: int) -> None:
    for seed, round_num in itertools.product((0, 1, 17), range(1, 40)):
        chosen = sampling.sample_clients(population, k, seed, round_num)
        assert chosen.shape == (k,)
        assert len(set(chosen.tolist())) == k, "a client was sampled twice in one round"
        assert chosen.min() >= 0 and chosen.max() < population
        assert np.all(np.diff(chosen) > 0), "indices are not sorted"


def test_whole_population_when_k_equals_population() -> None:
    np.testing.assert_array_equal(sampling.sample_clients(7, 7, 3, 5), np.arange(7))


def test_more_clients_than_population_is_an_error() -> None:
    with pytest.raises(ValueError):
        sampling.sample_clients(5, 6, 0, 1)


def test_deterministic_per_seed_and_round_whatever_the_call_order() -> None:
    forward = [sampling.sample_clients(100, 10, 4, r) for r in range(1, 21)]
    backward = [sampling.sample_clients(100, 10, 4, r) for r in range(20, 0, -1)][::-1]
    for a, b in zip(forward, backward, strict=True):
        np.testing.assert_array_equal(a, b)
    # Interleaving other seeds' draws does not disturb a seed's sequence.
    for r in range(1, 21):
        sampling.sample_clients(100, 10, 5, r)
        np.testing.assert_array_equal(sampling.sample_clients(100, 10, 4, r), forward[r - 1])


def test_differs_across_rounds_and_seeds() -> None:
    rounds = {tuple(sampling.sample_clients(100, 10, 0, r)) for r in range(1, 51)}
    assert len(rounds) == 50, "two rounds sampled the same clients"
    seeds = {tuple(sampling.sample_clients(100, 10, s, 1)) for s in range(50)}
    assert len(seeds) == 50, "two seeds sampled the same clients in round 1"


def test_inclusion_frequency_matches_k_over_population() -> None:
    population, k, rounds = 20, 5, 4000
    counts = np.zeros(population)
    for r in range(1, rounds + 1):
        counts[sampling.sample_clients(population, k, 11, r)] += 1
    assert counts.sum() == k * rounds
    p = k / population
    expected, sd = rounds * p, np.sqrt(rounds * p * (1 - p))
    z = (counts - expected) / sd
    # Each count is Binomial(rounds, p); |z| > 4.5 for any of 20 clients has
    # probability below 1e-4 for a uniform sampler.
    assert np.abs(z).max() < 4.5, f"inclusion counts {counts} far from {expected}"
    # Joint check: without replacement, Cov(z) = N/(N-1) (I - 11^T/N) and the
    # z sum to 0, so (N-1)/N * sum z^2 is asymptotically chi2(N-1).
    statistic = float(np.sum(z**2)) * (population - 1) / population
    assert stats.chi2.sf(statistic, population - 1) > 1e-3


def _subset_pvalue(sampler: Sampler, population: int, k: int, rounds: int) -> float:
    """Chi-square p-value of 'every k-subset is equally likely' for `sampler`."""
    subsets = {s: 0 for s in itertools.combinations(range(population), k)}
    for r in range(1, rounds + 1):
        subsets[tuple(int(i) for i in sampler(population, k, 2, r))] += 1
    observed = np.array(list(subsets.values()), dtype=float)
    return float(stats.chisquare(observed).pvalue)


def _block_sampler(population: int, k: int, seed: int, round_num: int) -> np.ndarray:
    """A flawed sampler: uniform marginals, but only consecutive blocks."""
    start = np.random.default_rng([seed, round_num]).integers(population)
    return np.sort((start + np.arange(k)) % population)


def test_every_subset_is_equally_likely() -> None:
    # 6 clients, 3 per round: 20 possible subsets, 300 expected draws of each.
    assert _subset_pvalue(sampling.sample_clients, 6, 3, 6000) > 1e-3
    # Control: the same statistic rejects a sampler with the right marginals
    # but the wrong joint law, so the check above has power.
    assert _subset_pvalue(_block_sampler, 6, 3, 6000) < 1e-10


def test_client_shuffle_seeds_are_deterministic_distinct_and_in_range() -> None:
    seeds = {(r, c): sampling.client_shuffle_seed(3, r, c)
             for r in range(1, 41) for c in range(25)}
    assert all(0 <= s < 2**31 - 1 for s in seeds.values())
    assert len(set(seeds.values())) == len(seeds), "two (round, client) pairs share a seed"
    assert sampling.client_shuffle_seed(3, 7, 4) == seeds[(7, 4)]
    assert sampling.client_shuffle_seed(3, 7, np.int64(4)) == seeds[(7, 4)]
    assert sampling.client_shuffle_seed(4, 7, 4) != seeds[(7, 4)]


def test_pooled_shuffle_seeds_are_deterministic_and_differ_by_round() -> None:
    pooled = [sampling.pooled_shuffle_seed(0, r) for r in range(1, 101)]
    assert len(set(pooled)) == 100
    assert pooled == [sampling.pooled_shuffle_seed(0, r) for r in range(1, 101)]
    assert sampling.pooled_shuffle_seed(1, 1) != pooled[0]


# ----- the accountant's sampling assumptions ---------------------------------------------
ALPHA = 1e-6  # false-alarm probability of each statistical check below
Z_ALPHA = float(stats.norm.isf(ALPHA / 2))


def _fold_tails(observed: np.ndarray, expected: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Merges the tail bins with expected counts below 5 into their neighbours."""
    keep = np.flatnonzero(expected >= 5)
    low, high = keep[0], keep[-1]

    def fold(a: np.ndarray) -> np.ndarray:
        return np.concatenate([[a[:low + 1].sum()], a[low + 1:high], [a[high:].sum()]])

    return fold(observed), fold(expected)


def test_poisson_inclusion_rate_and_cohort_sizes() -> None:
    population, k, rounds = 40, 8, 20000
    q = k / population
    counts = np.zeros(population)
    sizes = np.zeros(rounds, dtype=int)
    for r in range(1, rounds + 1):
        chosen = sampling.poisson_clients(population, k, 5, r)
        assert np.all(np.diff(chosen) > 0) and (chosen.size == 0 or
                                                 0 <= chosen[0] <= chosen[-1] < population)
        counts[chosen] += 1
        sizes[r - 1] = chosen.size
    # Each client's count is Binomial(rounds, q); Bonferroni over the clients.
    z_scores = (counts - rounds * q) / math.sqrt(rounds * q * (1 - q))
    assert np.abs(z_scores).max() < stats.norm.isf(ALPHA / 2 / population), counts
    # Cohort sizes: mean K, and the whole law Binomial(N, q), not a fixed K.
    mean_sd = math.sqrt(population * q * (1 - q) / rounds)
    assert abs(sizes.mean() - k) < Z_ALPHA * mean_sd, sizes.mean()
    expected = rounds * stats.binom.pmf(np.arange(population + 1), population, q)
    observed = np.bincount(sizes, minlength=population + 1).astype(float)
    assert stats.chisquare(*_fold_tails(observed, expected)).pvalue > ALPHA
    assert np.var(sizes) > 0.5 * population * q * (1 - q)
    # A pure function of (seed, round).
    np.testing.assert_array_equal(sampling.poisson_clients(population, k, 5, 17),
                                  sampling.poisson_clients(population, k, 5, 17))


@pytest.mark.parametrize("population,k", [(23, 5), (30, 10), (7, 7)])
def test_cyclic_cohorts_are_disjoint_within_a_pass(population: int, k: int) -> None:
    per_pass = population // k
    m = accounting.Mechanism("tree", 1.0, k, population, "cyclic", 1e-5)
    assert m.rounds_per_pass == per_pass
    passes = 3
    rounds = {r: sampling.cyclic_clients(population, k, 9, r)
              for r in range(1, passes * per_pass + 1)}
    first_pass = set()
    for p in range(passes):
        members = [rounds[p * per_pass + s + 1] for s in range(per_pass)]
        assert all(c.size == k for c in members)
        union = set(np.concatenate(members).tolist())
        assert len(union) == per_pass * k, f"cohorts overlap within pass {p + 1}"
        first_pass = first_pass or union
        assert union == first_pass  # the same clients every pass
    # Each client recurs exactly every per_pass rounds: min_separation
    # = per_pass - 1 and at most ceil(T / per_pass) participations in T rounds,
    # as accounting._tree_rdp assumes.
    seen: dict[int, list[int]] = {}
    for r, chosen in rounds.items():
        for c in chosen.tolist():
            seen.setdefault(c, []).append(r)
    for c, times in seen.items():
        assert np.all(np.diff(times) == per_pass), (c, times)
        for t in range(1, len(rounds) + 1):
            assert sum(r <= t for r in times) <= math.ceil(t / per_pass)
    assert len(seen) == per_pass * k  # the N mod K left over never take part

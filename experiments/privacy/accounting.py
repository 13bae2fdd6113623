"""Privacy accounting for user-level DP federated training: the one module.

Used by the training loop (epsilon after every round), by `./run.sh privacy`
(planning without training) and by analysis. Every number is computed from
the mechanism actually run, with these assumptions (see README):

* `uniform` sampling: a fixed-size cohort of K of N clients, without
  replacement; adjacency = replace one client's data (N public). Replacing a
  client moves its clipped update by up to 2*clip, so the Gaussian's
  std / sensitivity is noise_multiplier / 2. RDP only (Wang et al. 2019);
  dp-accounting's PLD accountant has no such event, so epsilon_pld is blank.
* `poisson` sampling: each client joins a round with probability q = K / N;
  adjacency = add or remove one client; sensitivity clip. RDP and PLD.
* `cyclic` participation (required by `tree`): one seeded permutation of
  clients cut into rounds of K and cycled, so a client takes part at most
  once per pass of N // K rounds. DP-FTRL tree aggregation without restarts
  (Kairouz et al. 2021, Appendix D, via TF Privacy's single-tree RDP).
* `adaptive` clipping: noise_multiplier is TFF's effective total (value noise
  plus the clipped-count noise, Andrew et al. 2021), so it is accounted as is.
* `local`: each client's clipped update is noised on the client; the guarantee
  is per client against the server, which sees who takes part, so there is no
  sampling amplification: the Gaussian (sensitivity 2*clip) is composed over
  the most rounds any client has joined so far.
* `banded_mf` (cyclic, like `tree`): DP-FTRL with a banded Toeplitz strategy
  (experiments.privacy.banded_strategy), add-or-remove; the release up to
  round t is one Gaussian mechanism of noise multiplier z / sens_t.
* `distributed`: the distributed discrete Gaussian over a secure sum, accounted
  by experiments.privacy.distributed_accounting (uniform sampling only) from
  the encoding actually used and the noise shares that reached each round's sum.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import dp_accounting as dpa
import numpy as np
from dp_accounting.pld import privacy_loss_distribution as pld_lib

from experiments.core.errors import UsageError
from experiments.privacy import banded_strategy, distributed_accounting
from experiments.privacy.discrete_gaussian import Encoding, encoding_of
from experiments.privacy.settings import DpSettings

MECHANISMS = ("fixed", "adaptive", "tree", "banded_mf", "local", "distributed")
CYCLIC = ("tree", "banded_mf")  # the mechanisms that need cyclic participation
SAMPLINGS = ("uniform", "poisson", "cyclic")
_ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64))
                + [128, 256, 512, 1024])
_PLD_DISCRETIZATION = 1e-4


def default_delta(population: int) -> float:
    """delta = 1 / N^1.1: below 1/N, so no single user can be revealed outright."""
    return float(population) ** -1.1


@dataclasses.dataclass(frozen=True)
class Mechanism:
    """What is accounted: one DP mechanism run for some rounds."""

    kind: str
    noise_multiplier: float
    clients_per_round: int
    population: int
    sampling: str
    delta: float
    # A simulated deployment (--simulated_population): population and cohort are
    # the deployment's, not the clients the model was trained on.
    simulated: bool = False
    # distributed: the clients' encoding (its noise multiplier is this mechanism's),
    # and how many clients' noise shares reach each round's sum (0: the cohort).
    encoding: Encoding | None = None
    shares: int = 0
    # banded_mf: the strategy's band width and horizon (--total_rounds).
    bands: int = 0
    rounds: int = 0

    @property
    def discrete(self) -> Encoding:
        """The distributed mechanism's encoding at this noise multiplier."""
        assert self.encoding is not None, "only --dp=distributed has an encoding"
        return dataclasses.replace(self.encoding, noise_multiplier=self.noise_multiplier)

    @property
    def q(self) -> float:
        """Sampling fraction K / N."""
        return self.clients_per_round / self.population

    @property
    def rounds_per_pass(self) -> int:
        """Rounds in one cyclic pass over the population."""
        return self.population // self.clients_per_round


def check(m: Mechanism) -> None:
    """Raises a UsageError for combinations the accounting cannot support."""
    if m.kind not in MECHANISMS:
        raise UsageError(f"--dp={m.kind} is unknown; valid: none, {', '.join(MECHANISMS)}")
    if m.sampling not in SAMPLINGS:
        raise UsageError(f"--client_sampling={m.sampling} is unknown; valid: "
                         f"{', '.join(SAMPLINGS)}")
    if not (m.noise_multiplier >= 0 and math.isfinite(m.noise_multiplier)):
        raise UsageError(f"--noise_multiplier={m.noise_multiplier} must be a finite "
                         f"number >= 0")
    if not 0 < m.delta < 1:
        raise UsageError(f"--delta={m.delta} must be in (0, 1)")
    if not 1 <= m.clients_per_round <= m.population:
        raise UsageError(f"--clients_per_round={m.clients_per_round} must be between 1 "
                         f"and the population {m.population}")
    if (m.kind in CYCLIC) != (m.sampling == "cyclic"):
        raise UsageError("--dp=tree and --dp=banded_mf go with --client_sampling=cyclic "
                         "(each client at most once per pass, as their accounting "
                         "assumes), and cyclic with them only")
    if m.kind == "distributed":
        _check_distributed(m)
    if m.kind == "banded_mf" and not 1 <= m.bands <= m.rounds_per_pass:
        raise UsageError(f"--bands={m.bands} must be between 1 and the {m.rounds_per_pass} "
                         f"rounds between a client's participations (N // K = "
                         f"{m.population} // {m.clients_per_round})")


def banded_sensitivity(m: Mechanism, rounds: int) -> float:
    """The banded strategy's sensitivity over the first `rounds` rounds (1 at the end)."""
    c = banded_strategy.strategy(m.rounds, m.bands, m.rounds_per_pass)
    return banded_strategy.sensitivity(c, m.rounds, m.rounds_per_pass, min(rounds, m.rounds))


def _check_distributed(m: Mechanism) -> None:
    if m.sampling != "uniform":
        raise UsageError("--dp=distributed needs --client_sampling=uniform: with poisson "
                         "the number of noise shares in the sum would differ between "
                         "neighbouring data sets, which its accounting does not cover")
    try:
        distributed_accounting.check(m.discrete)
    except ValueError as e:
        raise UsageError(f"--dp=distributed: {e}; raise --noise_multiplier or "
                         f"--num_bits") from None


def _gaussian(m: Mechanism) -> dpa.GaussianDpEvent:
    replace_one = m.sampling == "uniform" or m.kind == "local"
    return dpa.GaussianDpEvent(m.noise_multiplier / 2 if replace_one else
                               m.noise_multiplier)


def round_event(m: Mechanism) -> dpa.DpEvent:
    """The DP event of one round of a central mechanism (fixed / adaptive)."""
    if m.sampling == "poisson":
        return dpa.PoissonSampledDpEvent(m.q, _gaussian(m))
    return dpa.SampledWithoutReplacementDpEvent(
        m.population, m.clients_per_round, _gaussian(m))


@functools.lru_cache(maxsize=64)
def _rdp_one_round(m: Mechanism) -> np.ndarray:
    """RDP at every order of one round (RDP composes additively over rounds)."""
    relation = (dpa.NeighboringRelation.REPLACE_ONE if m.sampling == "uniform"
                else dpa.NeighboringRelation.ADD_OR_REMOVE_ONE)
    accountant = dpa.rdp.RdpAccountant(list(_ORDERS), relation)
    event = _gaussian(m) if m.kind == "local" else round_event(m)
    accountant.compose(event)
    return np.asarray(accountant._rdp)  # noqa: SLF001  (public accessor absent in 0.4.3)


def _tree_rdp(m: Mechanism, rounds: int) -> np.ndarray:
    # Here: tensorflow_privacy loads TensorFlow, which the privacy planner does without.
    from tensorflow_privacy.privacy.analysis import tree_aggregation_accountant as tree

    per_pass = m.rounds_per_pass
    return np.asarray(tree.compute_rdp_single_tree(
        m.noise_multiplier, total_steps=rounds,
        max_participation=math.ceil(rounds / per_pass),
        min_separation=per_pass - 1, orders=list(_ORDERS)))


def epsilon_rdp(m: Mechanism, rounds: int, participations: int | None = None) -> float:
    """epsilon after `rounds` rounds by the RDP accountant.

    `participations` (local DP only) is the most rounds any one client joined.
    """
    if rounds <= 0:
        return 0.0
    if m.noise_multiplier == 0:
        return math.inf
    if m.kind == "distributed":
        return distributed_accounting.epsilon(
            m.discrete, {(m.population, m.shares or m.clients_per_round): rounds}, m.delta)
    if m.kind == "tree":
        rdp = _tree_rdp(m, rounds)
    elif m.kind == "banded_mf":
        z = m.noise_multiplier / banded_sensitivity(m, rounds)
        rdp = np.asarray([a / (2 * z ** 2) for a in _ORDERS])
    else:
        count = participations if m.kind == "local" else rounds
        if count == 0:
            return 0.0
        rdp = count * _rdp_one_round(m)
    return float(dpa.rdp.compute_epsilon(list(_ORDERS), rdp, m.delta)[0])


@functools.lru_cache(maxsize=64)
def _pld_one_round(m: Mechanism):
    if m.kind == "local":
        return pld_lib.from_gaussian_mechanism(
            m.noise_multiplier / 2, value_discretization_interval=_PLD_DISCRETIZATION)
    return pld_lib.from_gaussian_mechanism(
        m.noise_multiplier, sampling_prob=m.q,
        value_discretization_interval=_PLD_DISCRETIZATION)


def pld_supported(m: Mechanism) -> bool:
    """Whether dp-accounting's PLD accountant covers this mechanism."""
    return m.kind in ("local", "banded_mf") or (m.sampling == "poisson" and m.kind not in
                                                ("tree", "distributed"))


def epsilon_pld(m: Mechanism, rounds: int, participations: int | None = None
                ) -> float | None:
    """epsilon after `rounds` rounds by the PLD accountant, None where unsupported."""
    if not pld_supported(m):
        return None
    count = participations if m.kind == "local" else rounds
    if rounds <= 0 or count == 0:
        return 0.0
    if m.noise_multiplier == 0:
        return math.inf
    if m.kind == "banded_mf":  # one Gaussian mechanism for the whole release
        release = pld_lib.from_gaussian_mechanism(
            m.noise_multiplier / banded_sensitivity(m, rounds),
            value_discretization_interval=_PLD_DISCRETIZATION)
        return float(release.get_epsilon_for_delta(m.delta))
    composed = _pld_one_round(m).self_compose(count)
    return float(composed.get_epsilon_for_delta(m.delta))


def prefix_noise(m: Mechanism, rounds: int) -> float:
    """Root-mean-square, over rounds 1..T, of the noise std in the running sum of the
    clipped updates, per unit clip: what the model's trajectory carries (utility, not
    privacy; comparable across mechanisms at equal epsilon).

    Independent per-round noise (fixed, adaptive, distributed) gives z sqrt(t) after t
    rounds, local DP's K clients sqrt(K) times that; the tree z sqrt(popcount(t)) (one
    noised node per set bit of t); banded MF z ||(A C^-1)_t||.
    """
    z, t = m.noise_multiplier, np.arange(1, rounds + 1)
    if m.kind == "tree":
        nodes = np.array([bin(int(i)).count("1") for i in t])
        return float(z * np.sqrt(nodes.mean()))
    if m.kind == "banded_mf":
        c = banded_strategy.strategy(m.rounds, m.bands, m.rounds_per_pass)
        return float(z * math.sqrt(banded_strategy.prefix_error(c, rounds) / rounds))
    per_round = z * (math.sqrt(m.clients_per_round) if m.kind == "local" else 1.0)
    return float(per_round * np.sqrt(t.mean()))


def calibrate(m: Mechanism, rounds: int, target_epsilon: float,
              participations: int | None = None) -> float:
    """The smallest noise multiplier whose RDP epsilon after `rounds` is <= target."""
    if not (target_epsilon > 0 and math.isfinite(target_epsilon)):
        raise UsageError(f"--target_epsilon={target_epsilon} must be a finite number > 0")
    if m.kind == "local" and participations is None:
        participations = rounds

    def eps(z: float) -> float:
        return epsilon_rdp(dataclasses.replace(m, noise_multiplier=z), rounds,
                           participations)

    high = 1.0
    while eps(high) > target_epsilon:
        high *= 2
        if high > 1e4:
            raise UsageError(
                f"--target_epsilon={target_epsilon} is unreachable in {rounds} rounds "
                f"even with noise_multiplier 1e4; raise the target or lower "
                f"--total_rounds")
    low = 0.0
    while high - low > 1e-4 * max(1.0, high):
        mid = (low + high) / 2
        if eps(mid) > target_epsilon:
            low = mid
        else:
            high = mid
    return high


def mechanism(dp: DpSettings, clients_per_round: int, sampling: str, population: int,
              dimension: int = 0, shares: int = 0, rounds: int = 0) -> Mechanism | None:
    """The accounted mechanism of a run's DP settings (None without --dp).

    Args:
      dp: the run's DP flags.
      clients_per_round: K, the cohort of a round (expected, for poisson).
      sampling: --client_sampling (uniform, poisson, cyclic).
      population: N, the clients the trainer samples from.
      dimension: the model's trainable parameters (needed by --dp=distributed,
        whose encoding depends on them).
      shares: --dp=distributed: the clients whose noise share reaches each round's
        sum (the cohort less the secure sum's dropouts; 0: the cohort).
      rounds: --dp=banded_mf: the strategy's horizon, the run's --total_rounds.

    With --simulated_population the mechanism is the simulated deployment's:
    cohorts of --noise_cohort_size (else K) drawn from that population.
    """
    if dp.dp == "none":
        return None
    if dp.simulated_population:  # the deployment the run stands for
        population = dp.simulated_population
        clients_per_round = dp.noise_cohort_size or clients_per_round
    encoding = (encoding_of(dp, clients_per_round, dimension) if dp.dp == "distributed"
                else None)
    m = Mechanism(kind=dp.dp, noise_multiplier=dp.noise_multiplier,
                  clients_per_round=clients_per_round, population=population,
                  sampling=sampling, delta=dp.delta or default_delta(population),
                  simulated=bool(dp.simulated_population), encoding=encoding,
                  shares=shares, bands=dp.bands if dp.dp == "banded_mf" else 0,
                  rounds=rounds)
    check(m)
    return m


def resolve(dp: DpSettings, clients_per_round: int, sampling: str, population: int,
            total_rounds: int, dimension: int = 0, shares: int = 0, rounds: int = 0
            ) -> DpSettings:
    """The DP settings with delta and (for --target_epsilon) the noise multiplier filled in
    (arguments as for `mechanism`, over `total_rounds` rounds)."""
    m = mechanism(dp, clients_per_round, sampling, population, dimension, shares,
                  rounds or total_rounds)
    if m is None:
        return dp
    if dp.target_epsilon > 0:
        z = calibrate(m, total_rounds, dp.target_epsilon)
        m = dataclasses.replace(m, noise_multiplier=z)
    return dataclasses.replace(dp, delta=m.delta, noise_multiplier=m.noise_multiplier)


# ----- Populations (experiments.simulation.population): rounds of varying cohorts ---------
# With --availability or --over_selection a uniform round samples k_t of the
# n_t clients eligible in that round (not K of N). The eligible set is seeded,
# independent of the data, so given it the round is a subsampled Gaussian on
# (n_t, k_t); a client not eligible is not touched. Dropout, deadlines and
# aggregating only the first K reports keep a subset of the selected clients;
# replacing one client still moves the aggregated sum by at most 2 x clip, so
# (n_t, k_t) with the selected k_t stays an upper bound.
_COHORT_GRID_STEPS = 8


def cohort_bucket(population: int, eligible: int) -> int:
    """The largest floor(N * 2^(-j/8)) <= eligible: the accounted cohort source.

    Rounding n_t down raises the sampling fraction k/n, which the subsampled
    Gaussian's RDP bound grows with, so the bound stays conservative while
    only a few distinct (n, k) need the (seconds-long) RDP computation.
    """
    j = 0
    while (bucket := math.floor(population * 2 ** (-j / _COHORT_GRID_STEPS))) > eligible:
        j += 1
    return bucket


def rdp_cohort(m: Mechanism, eligible: int, selected: int) -> np.ndarray:
    """RDP at every order of one uniform round selecting `selected` of `eligible`."""
    if selected == 0:
        return np.zeros(len(_ORDERS))
    unamplified = _rdp_one_round(dataclasses.replace(m, kind="local"))  # no sampling
    source = cohort_bucket(m.population, eligible)
    if source <= selected:
        return unamplified
    sampled = _rdp_one_round(dataclasses.replace(
        m, population=source, clients_per_round=selected))
    return np.minimum(sampled, unamplified)


def epsilon_rdp_cohorts(m: Mechanism, cohorts: dict[tuple[int, int], int]) -> float:
    """RDP epsilon of a central uniform mechanism over rounds of varying cohorts.

    `cohorts` maps (eligible n_t, selected k_t) to the number of rounds with it.
    """
    if not any(count for (_, k), count in cohorts.items() if k):
        return 0.0
    if m.noise_multiplier == 0:
        return math.inf
    rdp = sum(count * rdp_cohort(m, n, k) for (n, k), count in cohorts.items())
    return float(dpa.rdp.compute_epsilon(list(_ORDERS), rdp, m.delta)[0])

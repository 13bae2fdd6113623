"""Realistic client populations: who is eligible, picked, reports, and how long a round takes.

Cross-device federated learning (Bonawitz et al. 2019) only trains on devices
that are charging, on an unmetered network and idle; selected devices fail
before reporting; slow ones straggle. This module simulates that around the
sampler of `experiments.simulation.sampling`, as a pure function of (--seed, round,
client), so a resumed run sees exactly the rounds an uninterrupted one does:

* **Eligibility.** Each client gets a seeded profile p_i ~ Beta(4m, 4(1-m)),
  whose mean is m = `--availability` (1: every client always eligible): the
  chance it is charging, on Wi-Fi and idle in a round. With
  `--availability_period=P` (rounds per simulated day) the chance follows a
  daily cycle, p_i(t) = min(1, p_i (1 + cos(2 pi (t / P - phase_i)))), with a
  seeded phase (time zone) per client; its daily mean is p_i where p_i <= 1/2.
* **Selection.** `uniform`: ceil((1 + `--over_selection`) K) clients drawn
  uniformly without replacement from the round's eligible clients (all of
  them when fewer are eligible). `poisson` / `cyclic`: the sampler's choice,
  minus the clients not eligible (participation only shrinks).
* **Dropout.** Each selected client fails before reporting with probability
  `--dropout_rate`, independently per (round, client).
* **Stragglers.** Client i's speed s_i is seeded log-normal (median 1, log-std
  `--device_speed_sigma`). A client needs
  t_i = bits_down / 20 Mbit/s + examples_i x epochs x 5 ms / s_i + bits_up / 5 Mbit/s
  (download, local training, upload; bits from `experiments.aggregators.traffic`).
  A report later than `--round_deadline` simulated seconds is discarded
  (`late`); with over-selection the server aggregates the first K reports
  and discards the rest (also `late`).
* **Round duration** (`sim_round_seconds`): when the server closes the
  round: the last aggregated report if it got every report it waited for
  (K, or all selected if fewer); otherwise the deadline if one is set (it
  waits for the missing clients until then), else the last aggregated report
  (the server is assumed to notice a failure at once).

With the defaults (availability 1, no dropout, no deadline, no
over-selection) the selected clients are exactly those of
`experiments.simulation.sampling`, so earlier runs are reproduced bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from experiments.core.settings import setting
from experiments.simulation import sampling

EXAMPLE_SECONDS = 0.005  # local training time per example per epoch at speed 1
DOWNLOAD_BITS_PER_SECOND = 20e6
UPLOAD_BITS_PER_SECOND = 5e6
PROFILE_CONCENTRATION = 4.0  # a + b of each client's Beta eligibility profile

# Random streams of experiments.simulation.sampling.round_rng (sampling uses 0..3).
_PROFILE_STREAM = 10
_ELIGIBLE_STREAM = 11
_SELECT_STREAM = 12
_DROPOUT_STREAM = 13
_SPEED_STREAM = 14
_PHASE_STREAM = 15

COLUMNS = ("eligible", "selected", "completed", "dropped", "late", "sim_round_seconds")


@dataclasses.dataclass(frozen=True)
class PopulationSettings:
    """The population flags of one run (see the module docstring)."""

    availability: float = setting(
        1.0, "Mean chance a client is eligible (charging, on Wi-Fi, idle) in a round; each "
        "client has a seeded profile of that mean (1: every client always eligible).")
    availability_period: int = setting(
        0, "Rounds per simulated day: eligibility follows a daily cycle with a seeded "
        "phase per client (0: no cycle).")
    dropout_rate: float = setting(0.0, "Chance a selected client fails before reporting.")
    device_speed_sigma: float = setting(
        0.5, "Log-std of the seeded log-normal per-client device speed (median 1).")
    round_deadline: float = setting(
        0.0, "Simulated seconds after which a client's report is discarded (0: none).")
    over_selection: float = setting(
        0.0, "Select ceil((1 + x) K) eligible clients, aggregate the first K reports "
        "(--client_sampling=uniform).")


@dataclasses.dataclass(frozen=True)
class RoundOutcome:
    """Who took part in one round and what it cost (client indices, sorted)."""

    eligible: int
    selected: np.ndarray
    dropped: np.ndarray
    completed: np.ndarray
    late: np.ndarray
    seconds: float
    # Clients drawn by the sampler, before those that have failed for good are
    # removed: a client that has not failed was drawn with this cohort.
    drawn: int

    @property
    def reported(self) -> np.ndarray:
        """Clients that sent an update (aggregated or late): selected minus dropped."""
        return np.union1d(self.completed, self.late)

    @property
    def cohort(self) -> tuple[int, int]:
        """(eligible, drawn): what the privacy accounting of the round needs.

        The drawn cohort, not the selected one: removing failed clients after
        the draw shrinks the round, not the chance a surviving client had of
        being in it (accounting with the smaller cohort under-reports epsilon).
        """
        return self.eligible, self.drawn

    def row(self) -> dict:
        """The round's metrics.csv columns."""
        return {"eligible": self.eligible, "selected": int(self.selected.size),
                "completed": int(self.completed.size), "dropped": int(self.dropped.size),
                "late": int(self.late.size), "sim_round_seconds": self.seconds}


def eligibility_profiles(population: int, availability: float, seed: int) -> np.ndarray:
    """Each client's chance p_i of being eligible in a round (mean `availability`)."""
    if availability >= 1:
        return np.ones(population)
    rng = sampling.round_rng(seed, 0, _PROFILE_STREAM)
    a = PROFILE_CONCENTRATION * availability
    return rng.beta(a, PROFILE_CONCENTRATION - a, size=population)


def daily_phases(population: int, seed: int) -> np.ndarray:
    """Each client's time zone as a fraction of a day."""
    return sampling.round_rng(seed, 0, _PHASE_STREAM).random(population)


def device_speeds(population: int, sigma: float, seed: int) -> np.ndarray:
    """Each client's speed: log-normal, median 1 (1 for all when sigma is 0)."""
    z = sampling.round_rng(seed, 0, _SPEED_STREAM).standard_normal(population)
    return np.exp(sigma * z)


def over_selected(clients_per_round: int, over_selection: float) -> int:
    """ceil((1 + x) K): how many clients a uniform round selects."""
    return math.ceil(round((1 + over_selection) * clients_per_round, 9))


class Population:
    """The simulated population of one run: call `round(r)` for round r's outcome."""

    def __init__(self, settings: PopulationSettings, examples: np.ndarray, bits_down: float,
                 bits_up: float, seed: int, client_sampling: str = "uniform",
                 clients_per_round: int = 10):
        """`examples[i]`: examples client i trains on per round (all epochs)."""
        self.settings = settings
        self._examples = np.asarray(examples, dtype=np.float64)
        self.size = self._examples.size
        self._seed = seed
        self._sampling = client_sampling
        self._k = clients_per_round
        self._profiles = eligibility_profiles(self.size, settings.availability, seed)
        self._phases = daily_phases(self.size, seed)
        speeds = device_speeds(self.size, settings.device_speed_sigma, seed)
        self.seconds = (bits_down / DOWNLOAD_BITS_PER_SECOND
                        + self._examples * EXAMPLE_SECONDS / speeds
                        + bits_up / UPLOAD_BITS_PER_SECOND)

    @property
    def changes_cohorts(self) -> bool:
        """Whether rounds sample other than K of all N clients (privacy must know)."""
        return self.settings.availability < 1 or self.settings.over_selection > 0

    def probabilities(self, round_num: int) -> np.ndarray:
        """Each client's chance of being eligible in round `round_num`."""
        period = self.settings.availability_period
        if period <= 0 or self.settings.availability >= 1:
            return self._profiles
        cycle = 1 + np.cos(2 * np.pi * (round_num / period - self._phases))
        return np.minimum(1.0, self._profiles * cycle)

    def eligible(self, round_num: int) -> np.ndarray:
        """Indices of the clients eligible in round `round_num`."""
        if self.settings.availability >= 1:
            return np.arange(self.size)
        draws = sampling.round_rng(self._seed, round_num, _ELIGIBLE_STREAM).random(self.size)
        return np.flatnonzero(draws < self.probabilities(round_num))

    def select(self, round_num: int, eligible: np.ndarray) -> np.ndarray:
        """The round's selected clients among the eligible ones."""
        if self._sampling != "uniform":
            base = sampling.select_clients(self._sampling, self.size, self._k, self._seed,
                                           round_num)
            return base[np.isin(base, eligible)]
        target = over_selected(self._k, self.settings.over_selection)
        if eligible.size == self.size:
            return sampling.sample_clients(self.size, min(target, self.size), self._seed,
                                           round_num)
        rng = sampling.round_rng(self._seed, round_num, _SELECT_STREAM)
        return np.sort(rng.choice(eligible, size=min(target, eligible.size), replace=False))

    def round(self, round_num: int,
              survive: Callable[[np.ndarray], np.ndarray] | None = None) -> RoundOutcome:
        """Eligible, selected, dropped, aggregated and late clients, and the duration.

        `survive` removes selected clients that have stopped for good
        (`experiments.simulation.participation`), before anything else happens.
        """
        st = self.settings
        eligible = self.eligible(round_num)
        selected = self.select(round_num, eligible)
        drawn = int(selected.size)
        if survive is not None:
            selected = survive(selected)
        fails = sampling.round_rng(self._seed, round_num, _DROPOUT_STREAM).random(self.size)
        dropped = selected[fails[selected] < st.dropout_rate]
        reporting = np.setdiff1d(selected, dropped)
        times = self.seconds[reporting]
        on_time = reporting if st.round_deadline <= 0 else reporting[times <= st.round_deadline]
        goal = min(self._k, selected.size) if self._sampling == "uniform" else selected.size
        order = on_time[np.argsort(self.seconds[on_time], kind="stable")]
        completed = np.sort(order[:goal])
        late = np.setdiff1d(reporting, completed)
        last = float(self.seconds[completed].max()) if completed.size else 0.0
        if completed.size < goal and st.round_deadline > 0:
            last = st.round_deadline
        return RoundOutcome(int(eligible.size), selected, dropped, completed, late, last,
                            drawn)


def examples_per_round(task, client_ids: list[str]) -> np.ndarray:
    """Examples each client trains on in a round (capped, times local epochs)."""
    cfg = task.config
    sizes = np.array([task.train_data.num_examples(c) for c in client_ids])
    if cfg.max_elements_per_client:
        sizes = np.minimum(sizes, cfg.max_elements_per_client)
    return sizes * cfg.client_epochs_per_round

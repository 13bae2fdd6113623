"""What differential privacy costs a round: unweighted FedAvg without and with fixed-clip DP.

The two arms differ only in the DP aggregator (noise multiplier 1, clip 1);
their rounds run interleaved, and the privacy accounting of the whole run is
timed on its own.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from experiments.benchmark import timing
from experiments.benchmark.configs import experiment_config
from experiments.benchmark.timing import median
from experiments.config import ExperimentConfig
from experiments.core.settings import pick
from experiments.privacy import accounting
from experiments.privacy.settings import DpSettings
from experiments.training.federated_trainer import FederatedTrainer

DP_NOISE_MULTIPLIER = 1.0
DP_CLIP = 1.0


def _with_resolved_dp(config: ExperimentConfig, population: int) -> ExperimentConfig:
    """The config with its DP delta filled in, as `experiments.train` resolves it."""
    dp = accounting.resolve(pick(DpSettings, config), config.clients_per_round,
                            config.client_sampling, population, config.total_rounds)
    return dataclasses.replace(config, delta=dp.delta, noise_multiplier=dp.noise_multiplier)


def measure_dp(task: Any, data_dir: str, population: int, cohort: int, warmup: int,
               rounds: int) -> dict:
    """Unweighted FedAvg without and with fixed-clip DP, rounds interleaved ABBA."""
    plain_config = experiment_config(data_dir, algorithm="fedavg_unweighted",
                                     clients_per_round=cohort)
    dp_config = _with_resolved_dp(
        experiment_config(data_dir, algorithm="fedavg_unweighted", clients_per_round=cohort,
                          dp="fixed", noise_multiplier=DP_NOISE_MULTIPLIER, clip=DP_CLIP),
        population)
    seconds = timing.alternating_rounds(
        {"plain": FederatedTrainer(plain_config, task), "dp": FederatedTrainer(dp_config, task)},
        warmup, rounds, "DP")
    mechanism = accounting.mechanism(pick(DpSettings, dp_config), cohort,
                                     dp_config.client_sampling, population)
    began = time.perf_counter()
    accounting.epsilon_rdp(mechanism, warmup + rounds, 1)
    accounting_seconds = time.perf_counter() - began
    plain, dp = median(seconds["plain"]), median(seconds["dp"])
    return {
        "cohort": cohort, "algorithm": "fedavg_unweighted", "dp": "fixed",
        "noise_multiplier": DP_NOISE_MULTIPLIER, "clip": DP_CLIP,
        "median_round_seconds_plain": plain, "median_round_seconds_dp": dp,
        "overhead_ratio": dp / plain if plain else None,
        "accounting_seconds_per_round": accounting_seconds,
        "round_seconds_plain": seconds["plain"], "round_seconds_dp": seconds["dp"],
    }

"""Resident memory at two rounds of one long run: does a long training run leak?

The reading is of this process plus TFF's worker (where the training runs),
after a garbage collection, every 1/20 of the run and at the two rounds the
flags name; the growth between those two is the headline number.
"""

from __future__ import annotations

import time
from typing import Any

from experiments.benchmark import machine, timing
from experiments.benchmark.configs import experiment_config
from experiments.benchmark.timing import median
from experiments.training.federated_trainer import FederatedTrainer


def measure_memory(task: Any, data_dir: str, cohort: int, round_a: int,
                   round_b: int) -> dict:
    """RSS of this process plus TFF's worker at two rounds of one long run."""
    trainer = FederatedTrainer(experiment_config(data_dir, clients_per_round=cohort), task)
    state = trainer.initial_state()
    every = max(1, round_b // 20)
    trace: list[list[float]] = []
    seconds: list[float] = []
    at: dict[int, dict] = {}
    for round_num in range(1, round_b + 1):
        began = time.perf_counter()
        state, _ = trainer.run_round(state, round_num)
        seconds.append(time.perf_counter() - began)
        if round_num in (round_a, round_b) or round_num % every == 0:
            rss = machine.rss_mib()
            trace.append([round_num, rss["total_mib"]])
            if round_num in (round_a, round_b):
                at[round_num] = rss
            timing.progress(f"memory run round {round_num}/{round_b}: "
                            f"{rss['total_mib']:.0f} MiB (main + worker)")
    a, b = at[round_a]["total_mib"], at[round_b]["total_mib"]
    return {
        "cohort": cohort, "round_a": round_a, "round_b": round_b,
        "rss_a": at[round_a], "rss_b": at[round_b],
        "growth_percent": 100.0 * (b - a) / a if a else None,
        "median_round_seconds": median(seconds[round_a:]),
        "trace_total_mib": trace,
    }

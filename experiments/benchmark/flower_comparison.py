"""The cohort under Flower's simulation engine, then under ours: `speedup_vs_flower`.

`experiments.benchmark.flower` hands the rounds' data to the Flower peer and
runs it in Flower's own venv; this module runs the same rounds through our
trainer right after and sets the two medians side by side.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from experiments.benchmark import flower, timing
from experiments.benchmark.configs import experiment_config
from experiments.benchmark.settings import Settings
from experiments.benchmark.timing import median
from experiments.training.federated_trainer import FederatedTrainer


def _run_flower(task: Any, config: Any, settings: Settings) -> dict:
    """The Flower peer's result (its JSON plus clean-up) on the benchmark's rounds."""
    cohort, warmup, rounds = settings.flower_cohort, settings.warmup_rounds, settings.rounds
    with tempfile.TemporaryDirectory(prefix="bench-flower-") as tmp:
        data = os.path.join(tmp, "peer.npz")
        flower.write_peer_data(data, task, config, warmup + rounds, warmup)
        timing.progress(f"Flower: {warmup + rounds} rounds at cohort {cohort} "
                        f"(Ray start-up first; this takes a few minutes)")
        log = os.path.splitext(settings.output)[0] + ".flower.log"
        return flower.run_peer(settings.flower_python, data,
                               os.path.join(tmp, "flower.json"), log,
                               settings.flower_timeout, settings.flower_cpus_per_client)


def measure_flower(task: Any, data_dir: str, settings: Settings) -> dict:
    """The cohort under Flower's simulation engine, then under ours, back to back.

    Same model and initial weights, same clients in the same rounds, same
    local epochs, batch size and learning rate; medians over the rounds after
    the warm-up ones. `speedup_vs_flower` = Flower's median / ours.
    """
    cohort, warmup, rounds = settings.flower_cohort, settings.warmup_rounds, settings.rounds
    config = experiment_config(data_dir, clients_per_round=cohort)
    peer = _run_flower(task, config, settings)
    trainer = FederatedTrainer(config, task)
    state = trainer.initial_state()
    ours: list[float] = []
    examples: list[int] = []
    for round_num in range(1, warmup + rounds + 1):
        began = time.perf_counter()
        state, row = trainer.run_round(state, round_num)
        ours.append(time.perf_counter() - began)
        examples.append(int(row["train_examples"]))
    ours_median = median(ours[warmup:])
    theirs = peer.get("median_round_seconds")
    return {
        "cohort": cohort, "warmup_rounds": warmup, "rounds": rounds,
        "flower": peer,
        "flower_round_seconds": theirs,
        "our_round_seconds": ours_median,
        "our_round_seconds_all": ours,
        "speedup_vs_flower": theirs / ours_median if theirs and ours_median else None,
        "same_examples_as_flower": peer.get("round_examples") == examples,
    }

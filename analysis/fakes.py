"""Experiment folders with chosen numbers, written through experiments.core.results (tests).

The analysis tests need sweeps whose every value is known in advance, so that
plots and tables can be checked against numbers computed independently; these
folders are exactly what training writes (same module, same columns), only the
numbers are made up.
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments import config as config_lib
from experiments.core import results
from experiments.training import loop


def experiment(root: str, name: str, settings: dict, accuracies: Sequence[float],
               epsilon: float = float("nan"), bytes_up: int = 4, clients: int = 5,
               examples: int = 10, population: int = 100, complete: bool = True,
               bits_up: float | None = None, columns: dict | None = None) -> str:
    """One run: an eval after every round with the given test accuracies; its folder.

    `bits_up` also writes the exact upload columns compression writes (factor
    against a float32 upload of `bytes_up` bytes); `columns`, more values written
    in every round (e.g. the accounted delta, cohort and population of DP runs).
    """
    config = config_lib.ExperimentConfig(experiment_name=name, **settings).as_dict()
    data = {"train_clients": population, "train_examples": 1000 * population}
    experiment = results.Experiment.open(root, name, config, loop.columns(), data=data)
    exact = ({} if bits_up is None else
             {"bits_up_per_client": bits_up, "compression_factor": 8 * bytes_up / bits_up})
    for r, accuracy in enumerate(accuracies, start=1):
        experiment.append({**exact, **(columns or {}),
            "round": r, "train_loss": 2.0 / r, "train_accuracy": accuracy,
            "train_examples": examples, "clients": clients, "bytes_down_per_client": 8,
            "bytes_up_per_client": bytes_up, "round_seconds": 1.0,
            "epsilon_rdp": epsilon * r / len(accuracies), "test_accuracy": accuracy,
            "test_loss": 1.0 - accuracy, "naive_accuracy": 0.05, "eval_seconds": 0.5})
    if complete:
        experiment.write_summary({"round": float(len(accuracies))})
    return experiment.path

"""Which trainer runs an `--algorithm`: federated, centralised, or one client alone.

All three share the loop's interface (`initial_state`, `run_round`,
`model_weights`, `to_arrays` / `from_arrays`), so the training loop, the
results layout and evaluation treat them alike. `--algorithm=local` is the
"local" model of one client, `--local_client` (default 0: the first
non-participant), trained alone on its own data with the client optimizer,
one pass of `--client_epochs_per_round` epochs per round (as often as the
federation's clients train), evaluated like any run.
"""

from __future__ import annotations

import dataclasses

from experiments.config import ExperimentConfig
from experiments.core.errors import UsageError
from experiments.training.centralized_trainer import CentralizedTrainer
from experiments.training.federated_trainer import FederatedTrainer
from tasks.client_arrays import ArrayClientData
from tasks.task import Task


def _one_client(task: Task, index: int, flag: str) -> Task:
    """The task with its training data reduced to one client's."""
    ids = task.train_data.client_ids
    if not 0 <= index < len(ids):
        raise UsageError(f"{flag}={index} is not a training client index (0..{len(ids) - 1})")
    x, y = task.train_data.arrays(ids[index])
    return dataclasses.replace(
        task, train_data=ArrayClientData([ids[index]], x, y, [len(y)]))


class LocalTrainer(CentralizedTrainer):
    """One client's model trained on its own data alone (no federation)."""

    def __init__(self, config: ExperimentConfig, task: Task):
        # One "client per round": a round is client_epochs_per_round passes over
        # the client's own examples, as a federated client's local training is.
        super().__init__(dataclasses.replace(config, clients_per_round=1),
                         _one_client(task, config.local_client, "--local_client"))


def trainer_class(algorithm: str):
    """The trainer that runs `--algorithm` (federated unless centralised or local)."""
    return {"centralized": CentralizedTrainer, "local": LocalTrainer}.get(
        algorithm, FederatedTrainer)

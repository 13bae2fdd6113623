"""Who takes part in federated training: non-participants, failed clients, a local model.

The FF09 prototype ("Turbofan Tycoon") flags nodes as *non-participants* (they
train on their own data but neither send nor receive models) or *failed*
(they stop training altogether). Here:

- `--non_participants=K`: the first K training clients (in the task's client
  order) are left out of the federation: the federated trainer samples only
  from the others, and the privacy population is theirs.
- `--failed_clients=F --fail_at_round=R`: F of the participating clients,
  chosen once from `--seed`, are never selected from round R on (they have
  stopped); the round's `clients` column shows the smaller cohort.
- `--algorithm=local`: the "local" model of one client, `--local_client`
  (default 0: the first non-participant), trained alone on its own data with
  the client optimizer, one pass of `--client_epochs_per_round` epochs per
  round (as often as the federation's clients train), evaluated like any run.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments.centralized import CentralizedTrainer
from experiments.config import ExperimentConfig
from experiments.errors import UsageError
from tasks.sql_client_data import InMemoryClientData
from tasks.task import Task

_STREAM = 0x0FA1  # separates the failed clients' draw from other seeded choices


def federated_clients(config: ExperimentConfig, client_ids: list[str]) -> list[str]:
    """The training clients that join the federation (all but the non-participants)."""
    if config.non_participants >= len(client_ids):
        raise UsageError(f"--non_participants={config.non_participants} leaves none of the "
                         f"{len(client_ids)} training clients to federate; use fewer")
    return list(client_ids[config.non_participants:])


def failed_mask(config: ExperimentConfig, population: int) -> np.ndarray:
    """Boolean mask over the federation's clients: which ones fail (seeded, fixed)."""
    if config.failed_clients > population:
        raise UsageError(f"--failed_clients={config.failed_clients} exceeds the "
                         f"{population} participating clients")
    mask = np.zeros(population, dtype=bool)
    if config.failed_clients:
        rng = np.random.default_rng([config.seed, _STREAM])
        mask[rng.choice(population, size=config.failed_clients, replace=False)] = True
    return mask


def surviving(chosen: np.ndarray, failed: np.ndarray, round_num: int,
              fail_at_round: int) -> np.ndarray:
    """The round's selected clients without those that have failed by this round."""
    if round_num < fail_at_round or not failed.any():
        return chosen
    return chosen[~failed[chosen]]


def _one_client(task: Task, index: int, flag: str) -> Task:
    """The task with its training data reduced to one client's."""
    ids = task.train_data.client_ids
    if not 0 <= index < len(ids):
        raise UsageError(f"{flag}={index} is not a training client index (0..{len(ids) - 1})")
    x, y = task.train_data.arrays(ids[index])
    return dataclasses.replace(
        task, train_data=InMemoryClientData([ids[index]], x, y, [len(y)]))


class LocalTrainer(CentralizedTrainer):
    """One client's model trained on its own data alone (no federation)."""

    def __init__(self, config: ExperimentConfig, task: Task):
        # One "client per round": a round is client_epochs_per_round passes over
        # the client's own examples, as a federated client's local training is.
        super().__init__(dataclasses.replace(config, clients_per_round=1),
                         _one_client(task, config.local_client, "--local_client"))


def trainer_class(algorithm: str):
    """The trainer that runs `--algorithm` (federated unless centralised or local)."""
    from experiments.federated import FederatedTrainer

    return {"centralized": CentralizedTrainer, "local": LocalTrainer}.get(
        algorithm, FederatedTrainer)

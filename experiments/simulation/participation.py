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
- `--algorithm=local`: the "local" model of one client, trained alone
  (`experiments.training.trainers.LocalTrainer`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments.core.errors import UsageError
from experiments.core.settings import setting

_STREAM = 0x0FA1  # separates the failed clients' draw from other seeded choices


@dataclasses.dataclass(frozen=True)
class ParticipationSettings:
    """Who federates: non-participants, failed clients, the client trained alone."""

    non_participants: int = setting(0, "The first this many training clients never join the "
                                    "federation (they only train locally: --algorithm=local).")
    local_client: int = setting(0, "--algorithm=local: index of the training client trained "
                                "alone.")
    failed_clients: int = setting(0, "This many participating clients (seeded choice) fail: "
                                  "they stop training from --fail_at_round on.")
    fail_at_round: int = setting(1, "The round from which --failed_clients stop training.")


def federated_clients(non_participants: int, client_ids: list[str]) -> list[str]:
    """The training clients that join the federation (all but the non-participants)."""
    if non_participants >= len(client_ids):
        raise UsageError(f"--non_participants={non_participants} leaves none of the "
                         f"{len(client_ids)} training clients to federate; use fewer")
    return list(client_ids[non_participants:])


def failed_mask(failed_clients: int, population: int, seed: int) -> np.ndarray:
    """Boolean mask over the federation's clients: which ones fail (seeded, fixed)."""
    if failed_clients > population:
        raise UsageError(f"--failed_clients={failed_clients} exceeds the "
                         f"{population} participating clients")
    mask = np.zeros(population, dtype=bool)
    if failed_clients:
        rng = np.random.default_rng([seed, _STREAM])
        mask[rng.choice(population, size=failed_clients, replace=False)] = True
    return mask


def surviving(chosen: np.ndarray, failed: np.ndarray, round_num: int,
              fail_at_round: int) -> np.ndarray:
    """The round's selected clients without those that have failed by this round."""
    if round_num < fail_at_round or not failed.any():
        return chosen
    return chosen[~failed[chosen]]

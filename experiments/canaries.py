"""Memorisation canaries and their exposure (Carlini et al. 2019, "The Secret Sharer").

A canary is a secret planted in one client's training data; after training,
its *exposure* says how much more likely the model finds the secret than the
alternatives: with the canary ranked among all candidate secrets by the
model's loss (lowest first, the canary itself included),

    exposure = log2 |candidates| - log2 rank,

so 0 when the canary is the least likely candidate and log2 |candidates|
when the model prefers it to every other.

EMNIST canaries (`--canaries=N`, `--canary_repeats=R`): N training clients
are chosen from `--seed`; each gets R copies of one of its own images with a
random wrong label, the secret. The candidates are that image with each of
the C labels (the true label included), so exposure is at most log2 C
(5.95 bits for EMNIST-62) and reaching it means the model prefers the planted
label even to the true one. N more canaries are built the same way in other
clients but never inserted: their exposure is what an un-memorised secret
gets (chance: about 1 bit below the maximum, with a trained model lower).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from experiments.errors import UsageError
from tasks.sql_client_data import InMemoryClientData
from tasks.task import Task

_STREAM = 0xCA7


@dataclasses.dataclass(frozen=True)
class Canary:
    """One canary: an image of a training client and the secret label it gets."""

    client_index: int
    client_id: str
    example: int  # index of the image within the client's (original) data
    true_label: int
    label: int  # the secret: a random label other than the true one
    inserted: bool


def exposure(canary_loss: float, candidate_losses: np.ndarray) -> float:
    """log2 |R| - log2 rank of the canary among R = candidates + canary (lower loss first).

    Ties are resolved in the canary's favour (rank = 1 + candidates strictly lower).
    """
    losses = np.asarray(candidate_losses, dtype=np.float64).ravel()
    rank = 1 + int(np.sum(losses < canary_loss))
    return math.log2(losses.size + 1) - math.log2(rank)


def plan(data: InMemoryClientData, num_classes: int, count: int, seed: int
         ) -> list[Canary]:
    """`count` canaries to insert and `count` controls, in distinct seeded clients."""
    ids = data.client_ids
    if 2 * count > len(ids):
        raise UsageError(f"--canaries={count} needs {2 * count} training clients (half are "
                         f"controls); the task has {len(ids)}")
    rng = np.random.default_rng([seed, _STREAM])
    canaries = []
    for n, index in enumerate(rng.choice(len(ids), size=2 * count, replace=False)):
        _, y = data.arrays(ids[index])
        example = int(rng.integers(len(y)))
        true = int(y[example])
        label = int(rng.choice([c for c in range(num_classes) if c != true]))
        canaries.append(Canary(int(index), ids[index], example, true, label, n < count))
    return canaries


def with_canaries(data: InMemoryClientData, canaries: list[Canary], repeats: int
                  ) -> InMemoryClientData:
    """The client data with `repeats` mislabeled copies appended to each inserted canary's
    client (other clients, and the controls, unchanged)."""
    extra = {c.client_id: c for c in canaries if c.inserted}
    xs, ys, sizes = [], [], []
    for client in data.client_ids:
        x, y = data.arrays(client)
        if client in extra:
            c = extra[client]
            x = np.concatenate([x, np.repeat(x[c.example:c.example + 1], repeats, axis=0)])
            y = np.concatenate([y, np.full(repeats, c.label, dtype=y.dtype)])
        xs.append(x)
        ys.append(y)
        sizes.append(len(y))
    return InMemoryClientData(data.client_ids, np.concatenate(xs), np.concatenate(ys), sizes)


def num_classes(task: Task, seed: int) -> int:
    """Classes of the task's model (its output width)."""
    return int(task.build_model(seed).output_shape[-1])


def canaries_of(task: Task, config) -> list[Canary]:
    """The canaries (inserted and controls) a config plants; [] without --canaries."""
    if config.canaries <= 0:
        return []
    return plan(task.train_data, num_classes(task, config.seed), config.canaries,
                config.seed)


def insert(task: Task, config) -> Task:
    """The task with the config's canaries planted in its training data."""
    planted = canaries_of(task, config)
    if not planted:
        return task
    return dataclasses.replace(
        task, train_data=with_canaries(task.train_data, planted, config.canary_repeats))


def _losses(logits: np.ndarray) -> np.ndarray:
    """Cross-entropy of every label: -log softmax."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return np.log(np.exp(shifted).sum(axis=-1, keepdims=True)) - shifted


def exposures(predict, data: InMemoryClientData, canaries: list[Canary]) -> list[dict]:
    """Each canary's exposure under `predict` (images -> logits), with its details.

    `data` is the original (canary-free) client data the canaries were planned on.
    """
    images = np.stack([data.arrays(c.client_id)[0][c.example] for c in canaries])
    losses = _losses(np.asarray(predict(images), dtype=np.float64))
    records = []
    for c, row in zip(canaries, losses, strict=True):
        others = np.delete(row, c.label)
        records.append({**dataclasses.asdict(c), "loss": float(row[c.label]),
                        "true_label_loss": float(row[c.true_label]),
                        "rank": 1 + int(np.sum(others < row[c.label])),
                        "exposure": exposure(row[c.label], others)})
    return records

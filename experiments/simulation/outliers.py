"""Outlier clients: a seeded subset of the training population that misbehaves.

`--outlier_fraction` picks round(fraction x N) of the N training clients once,
from `--seed` (so every round and every resumed run agrees on who they are).
What they do (`--outlier_kind`):

- `label_flip`: every label y becomes C - 1 - y (C classes), data side;
- `constant_label`: every label becomes `--outlier_label` (a sensor stuck on
  one reading, the always-cold thermometer), data side;
- `scaled_random`: the client trains honestly, then sends a random direction
  whose L2 norm is `--outlier_scale` times its honest update's norm, update
  side (so the round runs split, see experiments.algorithms.split_round).

Each round's metrics row records how many outliers took part (`outlier_clients`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from experiments.core.errors import UsageError
from experiments.simulation.settings import OutlierSettings

_STREAM = 0x0071  # separates this module's random streams from sampling's
def choose(population: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the outlier clients: round(fraction x population), seeded."""
    mask = np.zeros(population, dtype=bool)
    count = int(round(fraction * population))
    if count:
        rng = np.random.default_rng([seed, _STREAM])
        mask[rng.choice(population, size=count, replace=False)] = True
    return mask


def flip_labels(dataset: tf.data.Dataset, num_classes: int) -> tf.data.Dataset:
    """(x, y) -> (x, C - 1 - y), on examples or on batches."""
    return dataset.map(lambda x, y: (x, tf.cast(num_classes - 1, y.dtype) - y))


def constant_labels(dataset: tf.data.Dataset, label: int) -> tf.data.Dataset:
    """(x, y) -> (x, label) with y's shape and dtype."""
    return dataset.map(lambda x, y: (x, tf.fill(tf.shape(y), tf.cast(label, y.dtype))))


def scaled_random(update: list[np.ndarray], scale: float,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """A Gaussian direction with global L2 norm = scale x the honest update's norm."""
    honest = np.sqrt(sum(float(np.sum(np.square(u, dtype=np.float64))) for u in update))
    noise = [rng.standard_normal(np.shape(u)) for u in update]
    norm = np.sqrt(sum(float(np.sum(n * n)) for n in noise))
    factor = scale * honest / norm if norm > 0 else 0.0
    return [(n * factor).astype(np.asarray(u).dtype) for n, u in zip(noise, update, strict=True)]


class Outliers:
    """Who the outliers are and what they do to their data or their updates."""

    def __init__(self, settings: OutlierSettings, seed: int, population: int,
                 num_classes: int):
        self.kind = settings.outlier_kind
        self._settings = settings
        self._seed = seed
        self._num_classes = num_classes
        self.mask = choose(population, settings.outlier_fraction, seed)
        if (self.mask.any() and self.kind == "constant_label"
                and settings.outlier_label >= num_classes):
            raise UsageError(f"--outlier_label={settings.outlier_label} must be below the "
                             f"task's {num_classes} classes")

    @property
    def update_side(self) -> bool:
        """Whether outliers change their updates (the round must run split)."""
        return bool(self.mask.any()) and self.kind == "scaled_random"

    def corrupt_dataset(self, dataset: tf.data.Dataset, client: int) -> tf.data.Dataset:
        """The client's (x, y) data as it trains on it (labels corrupted if an outlier)."""
        if not self.mask[client] or self.kind == "scaled_random":
            return dataset
        if self.kind == "label_flip":
            return flip_labels(dataset, self._num_classes)
        return constant_labels(dataset, self._settings.outlier_label)

    def corrupt_updates(self, updates: list, clients, round_num: int) -> list:
        """Updates as sent: scaled random ones for the outliers among `clients`."""
        if not self.update_side:
            return updates
        out = []
        for update, client in zip(updates, clients, strict=True):
            if self.mask[client]:
                rng = np.random.default_rng([self._seed, _STREAM, round_num, client])
                update = scaled_random(list(update), self._settings.outlier_scale, rng)
            out.append(update)
        return out

    def row(self, clients) -> dict:
        """metrics.csv: how many of the round's clients are outliers (when enabled)."""
        if not self.mask.any():
            return {}
        return {"outlier_clients": int(self.mask[np.asarray(clients, dtype=int)].sum())}

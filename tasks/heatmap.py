"""The heat-map toy of PAIR's explorable "How Federated Learning Protects Privacy".

Small, synthetic and fast by design. A square grid of locations has a true
hot / cold map (a seeded smooth field cut at its median, so half the cells are
hot). Each simulated user lives somewhere on the map and reports a handful of
thermometer readings (location, hot or cold) from around home; a small
classifier of location learns hot / cold for every cell: logistic regression
on Gaussian bumps (width `RBF_WIDTH` cells) centred on every cell, so a reading
also informs the cells near it. Convex and tiny (2 x (cells + 1) weights), it
learns the map in a few rounds. The explorable's knobs are flags:

- number of users and readings per user (`--heatmap_users`, `--heatmap_readings`);
- local steps between averaging (`--client_epochs_per_round`, `--client_batch_size`);
- outlier users with broken thermometers (`--heatmap_outliers`): extra users whose
  every reading is cold, living at a hot spot, with `--heatmap_outlier_readings`
  readings each; the honest users are the same with or without them, so runs
  with and without the outlier differ by exactly one user;
- the privacy slider: `--heatmap_location_noise` (each reported location moved
  by Gaussian noise, a local randomisation) and user-level DP-FedAvg
  (`--algorithm=fedavg_unweighted --dp=fixed --noise_multiplier=...`).

Test data is the true map, one example per cell (test clients are its rows),
so `test_accuracy` is the global model's accuracy on the map; `--algorithm=local`
gives a single user's local-only model for comparison.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from experiments.core.errors import UsageError
from tasks.client_arrays import ArrayClientData
from tasks.settings import TaskConfig
from tasks.task import Task

NAME = "heatmap"
MODELS = ("rbf_logistic",)
RBF_WIDTH = 1.5
HOT, COLD = 1, 0
_BUMPS = 6


def true_map(grid: int, seed: int) -> np.ndarray:
    """(grid, grid) int array, 1 = hot: a sum of seeded Gaussian bumps above its median."""
    rng = np.random.default_rng([seed, 0])
    centres = rng.uniform(0, grid, size=(_BUMPS, 2))
    signs = rng.choice([-1.0, 1.0], size=_BUMPS)
    width = grid / 4.0
    rows, cols = np.meshgrid(np.arange(grid) + 0.5, np.arange(grid) + 0.5, indexing="ij")
    field = sum(s * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * width ** 2))
                for s, (r, c) in zip(signs, centres, strict=True))
    return (field > np.median(field)).astype(np.int32)


def to_features(locations: np.ndarray, grid: int) -> np.ndarray:
    """(row, col) positions in [0, grid) to model inputs: one Gaussian bump per cell centre."""
    centres = np.argwhere(np.ones((grid, grid), dtype=bool)) + 0.5
    squared = ((np.asarray(locations, np.float64)[:, np.newaxis, :] - centres) ** 2).sum(-1)
    return np.exp(-squared / (2 * RBF_WIDTH ** 2)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class User:
    """One user's readings: where they really were, where they reported, what they read."""

    name: str
    locations: np.ndarray  # (readings, 2) true positions in [0, grid)
    reported: np.ndarray  # (readings, 2) reported positions (after location noise)
    labels: np.ndarray  # (readings,) 1 hot, 0 cold, as the thermometer reads


def _readings(rng: np.random.Generator, home: np.ndarray, count: int, spread: float,
              grid: int) -> np.ndarray:
    return np.clip(home + rng.normal(0.0, spread, size=(count, 2)), 0.0, grid - 1e-6)


def make_users(hot: np.ndarray, users: int, readings: int, spread: float,
               outliers: int = 0, outlier_readings: int = 0, location_noise: float = 0.0,
               seed: int = 0) -> list[User]:
    """Honest users (true readings around a random home), then broken-thermometer outliers.

    The honest users depend only on (map, users, readings, spread, seed), not on
    the outliers or the location noise (separate random streams), so runs that
    differ in those knobs compare the same people.
    """
    grid = hot.shape[0]
    honest_rng = np.random.default_rng([seed, 1])
    outlier_rng = np.random.default_rng([seed, 2])
    noise_rng = np.random.default_rng([seed, 3])
    people = []
    for u in range(users):
        home = honest_rng.uniform(0, grid, size=2)
        where = _readings(honest_rng, home, readings, spread, grid)
        people.append(("user", u, where, hot[where[:, 0].astype(int), where[:, 1].astype(int)]))
    hot_cells = np.argwhere(hot == HOT)
    for o in range(outliers):
        home = hot_cells[outlier_rng.integers(len(hot_cells))] + 0.5
        where = _readings(outlier_rng, home, outlier_readings or readings, spread, grid)
        people.append(("outlier", o, where, np.full(len(where), COLD, np.int32)))
    result = []
    for kind, index, where, labels in people:
        moved = where + noise_rng.normal(0.0, location_noise, size=where.shape) \
            if location_noise > 0 else where
        result.append(User(f"{kind}_{index:03d}", where,
                           np.clip(moved, 0.0, grid - 1e-6), labels.astype(np.int32)))
    return result


def build_model(seed: int, cells: int) -> tf.keras.Model:
    """Logistic regression: the cells' bump features -> 2 logits (cold, hot)."""
    return tf.keras.Sequential([
        tf.keras.layers.InputLayer(input_shape=(cells,)),
        tf.keras.layers.Dense(2, kernel_initializer=tf.keras.initializers.GlorotUniform(
            seed=seed * 1000)),
    ])


def _check(config: TaskConfig) -> None:
    for name, minimum in (("heatmap_grid", 2), ("heatmap_users", 1), ("heatmap_readings", 1),
                          ("heatmap_outliers", 0), ("heatmap_outlier_readings", 0)):
        value = getattr(config, name)
        if value < minimum:
            raise UsageError(f"--{name}={value} must be an integer >= {minimum}")
    for name in ("heatmap_spread", "heatmap_location_noise"):
        value = getattr(config, name)
        if not (np.isfinite(value) and value >= 0):
            raise UsageError(f"--{name}={value} must be a finite number >= 0 (cells)")


def build_task(config: TaskConfig) -> Task:
    """The heat-map task the --heatmap_* flags describe."""
    model = config.model or MODELS[0]
    if model not in MODELS:
        raise UsageError(f"--model={model} is not a model of --task={NAME}; valid: "
                         f"{', '.join(MODELS)}")
    _check(config)
    grid = config.heatmap_grid
    hot = true_map(grid, config.heatmap_map_seed)
    users = make_users(hot, config.heatmap_users, config.heatmap_readings,
                       config.heatmap_spread, config.heatmap_outliers,
                       config.heatmap_outlier_readings, config.heatmap_location_noise,
                       config.heatmap_map_seed)
    train = ArrayClientData(
        [u.name for u in users],
        np.concatenate([to_features(u.reported, grid) for u in users]),
        np.concatenate([u.labels for u in users]),
        [len(u.labels) for u in users])
    cells = np.argwhere(np.ones_like(hot, dtype=bool))  # row-major
    test = ArrayClientData([f"row_{r:03d}" for r in range(grid)],
                              to_features(cells + 0.5, grid), hot.ravel().astype(np.int32),
                              [grid] * grid)
    return Task(
        name=NAME, config=config, train_data=train, test_data=test,
        build_model=lambda seed: build_model(seed, grid * grid), model_name=model,
        description=(f"heat map {grid}x{grid} ({int(hot.sum())} hot cells), "
                     f"{config.heatmap_users} users x {config.heatmap_readings} readings, "
                     f"{config.heatmap_outliers} outliers, location noise "
                     f"{config.heatmap_location_noise:g}"))

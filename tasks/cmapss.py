"""NASA C-MAPSS turbofan remaining useful life (RUL), as in Cloudera FF09's "Turbofan Tycoon".

Engines run until failure; one example per engine cycle: the 16 instantaneous
sensor readings and settings of `FEATURES` (no history), target = cycles left
until the engine's last recorded cycle. As in the prototype (see
../shared/data/cmapss/README.md), the engines are the train and test
trajectories of the chosen sub-datasets (FD001 + FD003: 400 engines), every
trajectory's last row counting as its failure (the RUL files are not used).

A seeded permutation of the engines gives `clients x engines_per_client`
training engines, dealt to clients ("factories") in order, and the rest are
held out; each test engine is its own test client. Features and target are
standardised with the training clients' statistics, computed federatedly:
each client reports only (count, mean, sum of squared deviations) of its own
rows, and the server merges them exactly (Chan et al.'s parallel update), so
no raw reading leaves a client and the result equals the pooled statistics.

The model is the prototype's: one hidden layer of 48 ReLU units, 865 weights.
The naive model is the prototype's too: every engine lives the median life of
the training engines, so its prediction at cycle t is max(median life - t, 0)
(an engine past that age is predicted due now). Unclipped, (median life - t)
would score about 120 cycles on held-out sets the size of the prototype's
(16,245 rows), far from its published 94.2; clipped it scores 97 +- 6 over
such random splits, as does a constant median RUL (96 +- 5).
"""

from __future__ import annotations

import dataclasses
import lzma
import os

import numpy as np
import tensorflow as tf

from experiments.core.errors import UsageError
from experiments.core.paths import SHARED_DATA_DIR
from tasks.client_arrays import ArrayClientData
from tasks.scoring import RegressionScoring
from tasks.settings import TaskConfig
from tasks.task import Task

NAME = "cmapss_rul"
NUM_COLUMNS = 26
# Feature name -> 0-based column of the NASA files (unit, cycle, 3 settings, 21 sensors).
FEATURES = {"setting_1": 2, "setting_2": 3, "T24": 6, "T30": 7, "T50": 8, "P30": 11,
            "Nf": 12, "Nc": 13, "Ps30": 15, "phi": 16, "NRf": 17, "NRc": 18, "BPR": 19,
            "htBleed": 21, "W31": 24, "W32": 25}
SUBSETS = ("FD001", "FD002", "FD003", "FD004")
HIDDEN_UNITS = 48
MODELS = ("mlp48",)
# Without --data_dir: the project's shared data folder beside the checkout, if present.
SHARED_DIR = os.path.join(SHARED_DATA_DIR, "cmapss")


@dataclasses.dataclass(frozen=True)
class Engine:
    """One run-to-failure trajectory: its features per cycle, cycles and RUL."""

    name: str  # e.g. "train_FD001_u007"
    features: np.ndarray  # (cycles, 16) float64
    cycles: np.ndarray  # (cycles,) 1..n
    rul: np.ndarray  # (cycles,) n - cycle, 0 at the last row

    @property
    def life(self) -> int:
        """Cycles until failure (the last recorded cycle)."""
        return int(self.cycles[-1])


def _open_text(data_dir: str, stem: str):
    """The file `stem`.txt.xz, else `stem`.txt, opened as text; UsageError if neither."""
    for suffix, opener in ((".txt.xz", lzma.open), (".txt", open)):
        path = os.path.join(data_dir, stem + suffix)
        if os.path.exists(path):
            return path, opener(path, "rt", encoding="ascii", errors="replace")
    raise UsageError(f"--data_dir={data_dir} has no {stem}.txt.xz or {stem}.txt "
                     f"(the NASA C-MAPSS files, e.g. ../shared/data/cmapss)")


def read_table(data_dir: str, stem: str) -> np.ndarray:
    """One NASA file as a (rows, 26) float array; UsageError on a bad row."""
    path, handle = _open_text(data_dir, stem)
    with handle:
        numbered = [(n, line) for n, line in enumerate(handle.read().splitlines(), start=1)
                    if line.strip()]
    if not numbered:
        raise UsageError(f"{path} has no rows")
    lines = [line for _, line in numbered]
    for number, line in numbered:
        if len(line.split()) != NUM_COLUMNS:
            raise UsageError(f"{path}:{number} has {len(line.split())} fields; a C-MAPSS "
                             f"row has {NUM_COLUMNS} (unit, cycle, 3 settings, 21 sensors)")
    try:
        values = np.array(" ".join(lines).split(), dtype=np.float64)
    except ValueError:
        raise UsageError(f"{path} has a field that is not a number") from None
    return values.reshape(len(lines), NUM_COLUMNS)


def engines_of(table: np.ndarray, prefix: str) -> list[Engine]:
    """Rows grouped by unit (in order of first appearance), RUL = last cycle - cycle."""
    units, first = np.unique(table[:, 0], return_index=True)
    engines = []
    for unit in units[np.argsort(first)]:
        rows = table[table[:, 0] == unit]
        rows = rows[np.argsort(rows[:, 1], kind="stable")]
        cycles = rows[:, 1].astype(np.int64)
        engines.append(Engine(
            name=f"{prefix}_u{int(unit):03d}",
            features=rows[:, list(FEATURES.values())],
            cycles=cycles,
            rul=(cycles[-1] - cycles).astype(np.float64)))
    return engines


def load_engines(data_dir: str, subsets: tuple[str, ...]) -> list[Engine]:
    """Train then test engines of each sub-dataset, in the order given."""
    engines = []
    for subset in subsets:
        for split in ("train", "test"):
            stem = f"{split}_{subset}"
            engines += engines_of(read_table(data_dir, stem), stem)
    return engines


# Federated standardisation: (count, mean, M2) per client, merged by the server.
Moments = tuple[int, np.ndarray, np.ndarray]


def client_moments(values: np.ndarray) -> Moments:
    """What one client reports: its row count, column means and sums of squared deviations."""
    values = np.asarray(values, dtype=np.float64)
    mean = values.mean(axis=0)
    return len(values), mean, ((values - mean) ** 2).sum(axis=0)


def merge_moments(parts: list[Moments]) -> tuple[np.ndarray, np.ndarray]:
    """Server side: exact pooled mean and (population) variance from clients' moments."""
    count, mean, m2 = parts[0]
    for n, m, s in parts[1:]:
        total = count + n
        delta = m - mean
        mean = mean + delta * (n / total)
        m2 = m2 + s + delta ** 2 * (count * n / total)
        count = total
    return mean, m2 / count


@dataclasses.dataclass(frozen=True)
class Split:
    """Engines dealt to training clients and held out, with the training statistics."""

    clients: list[list[Engine]]
    test: list[Engine]
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float
    y_std: float

    @property
    def median_life(self) -> float:
        """The naive model's total life: median life of the training engines."""
        return float(np.median([e.life for c in self.clients for e in c]))

    def standardise(self, engines: list[Engine]) -> tuple[np.ndarray, np.ndarray]:
        """Model-ready (x, y) float32 arrays of these engines' rows, in order."""
        x = np.concatenate([e.features for e in engines])
        y = np.concatenate([e.rul for e in engines])
        return (((x - self.x_mean) / self.x_std).astype(np.float32),
                ((y - self.y_mean) / self.y_std).astype(np.float32)[:, np.newaxis])


def split(engines: list[Engine], clients: int, engines_per_client: int,
          seed: int) -> Split:
    """Seeded partition: the first clients x engines_per_client of a permutation train."""
    needed = clients * engines_per_client
    if needed >= len(engines):
        raise UsageError(
            f"--cmapss_clients={clients} x --cmapss_engines_per_client="
            f"{engines_per_client} = {needed} training engines leaves none of the "
            f"{len(engines)} engines for testing; use fewer")
    order = np.random.default_rng(seed).permutation(len(engines))
    dealt = [[engines[i] for i in order[c * engines_per_client:(c + 1) * engines_per_client]]
             for c in range(clients)]
    test = [engines[i] for i in sorted(order[needed:])]
    x_parts = [client_moments(np.concatenate([e.features for e in c])) for c in dealt]
    y_parts = [client_moments(np.concatenate([e.rul for e in c])[:, np.newaxis])
               for c in dealt]
    x_mean, x_var = merge_moments(x_parts)
    y_mean, y_var = merge_moments(y_parts)
    x_std = np.sqrt(x_var)
    x_std[x_std == 0] = 1.0  # a constant feature stays 0 after centring
    return Split(dealt, test, x_mean, x_std, float(y_mean[0]), float(np.sqrt(y_var[0])))


def _client_data(ids: list[str], groups: list[list[Engine]], s: Split) -> ArrayClientData:
    arrays = [s.standardise(g) for g in groups]
    x = np.concatenate([a[0] for a in arrays])
    y = np.concatenate([a[1] for a in arrays])
    return ArrayClientData(ids, x, y, [len(a[1]) for a in arrays])


class CmapssScoring(RegressionScoring):
    """RMSE in cycles; the naive model predicts max(median training life - cycle, 0)."""

    def __init__(self, s: Split):
        super().__init__(target_scale=s.y_std)
        cycles = np.concatenate([e.cycles for e in s.test]).astype(np.float64)
        rul = np.maximum(s.median_life - cycles, 0.0)
        self._naive = ((rul - s.y_mean) / s.y_std).astype(np.float32)

    def naive_outputs(self, train_y: np.ndarray, num_examples: int,
                      output_shape: tuple[int, ...]) -> np.ndarray:
        """Per test example (test clients in order): the standardised naive RUL."""
        if num_examples != len(self._naive):
            raise ValueError(f"{num_examples} test examples, expected {len(self._naive)}")
        return self._naive.reshape((num_examples,) + output_shape)


def build_model(seed: int, num_features: int = len(FEATURES)) -> tf.keras.Model:
    """One hidden layer of 48 ReLU units and a linear output: 16*48 + 48 + 48 + 1 = 865."""
    init = lambda i: tf.keras.initializers.GlorotUniform(seed=seed * 1000 + i)  # noqa: E731
    return tf.keras.Sequential([
        tf.keras.layers.InputLayer(input_shape=(num_features,)),
        tf.keras.layers.Dense(HIDDEN_UNITS, activation="relu", kernel_initializer=init(0)),
        tf.keras.layers.Dense(1, kernel_initializer=init(1)),
    ])


def parse_subsets(text: str) -> tuple[str, ...]:
    """'FD001,FD003' -> ('FD001', 'FD003'); UsageError on an unknown or repeated name."""
    names = tuple(s.strip().upper() for s in text.split(",") if s.strip())
    bad = [n for n in names if n not in SUBSETS]
    if not names or bad or len(set(names)) != len(names):
        raise UsageError(f"--cmapss_subsets={text} must be distinct names from "
                         f"{', '.join(SUBSETS)}, comma-separated")
    return names


def load_split(config: TaskConfig) -> Split:
    """The engines and partition the config describes (also used by analysis.maintenance)."""
    data_dir = config.data_dir or (SHARED_DIR if os.path.isdir(SHARED_DIR) else None)
    if not data_dir:
        raise UsageError("--task=cmapss_rul needs --data_dir=<folder of the NASA C-MAPSS "
                         "files> (e.g. ../shared/data/cmapss)")
    engines = load_engines(data_dir, parse_subsets(config.cmapss_subsets))
    return split(engines, config.cmapss_clients, config.cmapss_engines_per_client,
                 config.cmapss_split_seed)


def build_task(config: TaskConfig) -> Task:
    """The CMAPSS RUL task (data from --data_dir)."""
    model = config.model or MODELS[0]
    if model not in MODELS:
        raise UsageError(f"--model={model} is not a model of --task={NAME}; valid: "
                         f"{', '.join(MODELS)}")
    s = load_split(config)
    data_dir = os.path.abspath(config.data_dir or SHARED_DIR)
    train_ids = [f"factory_{i:03d}" for i in range(len(s.clients))]
    train = _client_data(train_ids, s.clients, s)
    test = _client_data([e.name for e in s.test], [[e] for e in s.test], s)
    engines = sum(len(c) for c in s.clients)
    return Task(
        name=NAME, config=config, train_data=train, test_data=test,
        build_model=build_model, scoring=CmapssScoring(s), model_name=model,
        data_file=data_dir,
        description=(f"C-MAPSS {'+'.join(parse_subsets(config.cmapss_subsets))} RUL: "
                     f"{engines} training engines on {len(s.clients)} clients, "
                     f"{len(s.test)} test engines; median training life "
                     f"{s.median_life:g}, RUL std {s.y_std:.1f} cycles"))

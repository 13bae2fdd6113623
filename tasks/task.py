"""What every federated task provides to the training loop and to evaluation.

A task bundles client data (train and test splits), per-client preprocessing,
the Keras model and its loss, and the trivial baseline a result must beat.
New tasks are one module in `tasks/` plus one line in `tasks.registry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from experiments.core.settings import setting
from tasks.partition import PARTITIONS
from tasks.scoring import Scoring
from tasks.sql_client_data import InMemoryClientData

SHUFFLE_BUFFER = 10_000
# Text tasks' splits (tasks.stackoverflow_word / _tag have test and heldout).
EVAL_SPLITS = ("test", "heldout")


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Task-level settings shared by all tasks (the data side of the flags).

    Declared once here: the binaries' flags of the same names are generated
    from these fields (`experiments.config`), and a task-specific setting
    (`cmapss_*`, `heatmap_*`, the text tasks' vocabulary) is refused with
    any other task.
    """

    data_dir: str = setting(
        "", "Folder with TFF's dataset files (default: $TFF_DATA_DIR, else ~/.tff).")
    model: str = setting("", "Model architecture, one of the task's (empty: the task's "
                         "default; emnist_character: cnn_dropout, cnn, 2nn, logistic).")
    only_digits: bool = setting(False, "EMNIST: 10 digit classes instead of 62.")
    client_epochs_per_round: int = setting(1, "Local epochs per round on each client.")
    client_batch_size: int = setting(20, "Client minibatch size.")
    max_elements_per_client: int = setting(
        0, "Use at most this many examples per client (0: all).")
    eval_batch_size: int = setting(500, "Batch size for evaluation passes.")
    # Text tasks (tasks.stackoverflow_word / _tag, tasks.shakespeare); docs/tasks.md.
    vocab_size: int = setting(10_000, "stackoverflow_word / stackoverflow_tag: the most "
                              "frequent words kept (others are out-of-vocabulary).")
    tag_vocab_size: int = setting(500, "stackoverflow_tag: the most frequent tags predicted.")
    sequence_length: int = setting(0, "Tokens per sequence (0: the task's default, "
                                   "stackoverflow_word 20, shakespeare_character 80).")
    eval_split: str = setting("test", "Split scored on eval rounds: test (final numbers) or "
                              "heldout (validation; stackoverflow tasks).", EVAL_SPLITS)
    # C-MAPSS turbofan RUL (tasks.cmapss) and the heat-map explorable (tasks.heatmap).
    cmapss_subsets: str = setting("FD001,FD003", "cmapss_rul: NASA sub-datasets whose train "
                                  "and test engines are used, comma-separated (FD001..FD004).")
    cmapss_clients: int = setting(80, "cmapss_rul: training clients (factories).")
    cmapss_engines_per_client: int = setting(4, "cmapss_rul: engines per training client; "
                                             "the other engines are held out for testing.")
    cmapss_split_seed: int = setting(0, "cmapss_rul: seed of the engines' partition.")
    heatmap_grid: int = setting(12, "heatmap: the map is a grid of this many cells per side.")
    heatmap_users: int = setting(24, "heatmap: honest users (training clients).")
    heatmap_readings: int = setting(8, "heatmap: readings each user reports.")
    heatmap_spread: float = setting(1.5, "heatmap: std (cells) of a user's readings around "
                                    "home.")
    heatmap_outliers: int = setting(0, "heatmap: extra users with a broken thermometer "
                                    "(every reading cold).")
    heatmap_outlier_readings: int = setting(0, "heatmap: readings of each outlier (0: "
                                            "--heatmap_readings).")
    heatmap_location_noise: float = setting(0.0, "heatmap: privacy slider, std (cells) of "
                                            "the Gaussian noise on each reported location.")
    heatmap_map_seed: int = setting(0, "heatmap: seed of the true map and of the users.")
    seed: int = setting(0, "Seed for model init, client sampling and client shuffling "
                        "(and the clients of a --partition).")
    # The data axis (tasks.partition): the pooled training examples split anew.
    partition: str = setting(
        "natural", "natural: the data set's own clients; iid: equal random clients; shards: "
        "label-sorted shards (McMahan et al. 2017); dirichlet: label skew (Hsu et al. "
        "2019); quantity_skew: log-normal client sizes.", PARTITIONS)
    partition_clients: int = setting(100, "Clients of a --partition other than natural.")
    shards_per_client: int = setting(2, "--partition=shards: shards per client.")
    dirichlet_alpha: float = setting(0.5, "--partition=dirichlet: concentration alpha "
                                     "(small: few labels per client).")
    quantity_sigma: float = setting(1.0, "--partition=quantity_skew: log-std of the sizes.")


@dataclasses.dataclass(frozen=True)
class Task:
    """A federated learning task.

    Client data yields model-ready (x, y) examples (prepared once at load);
    every pipeline (client training, centralised training, evaluation) batches
    them with `to_batches`. `build_model(seed)` returns an uncompiled Keras model
    (outputs are logits for classification). `scoring` gives the loss, the
    metrics and the naive baseline a result must beat (e.g. the majority class).
    """

    name: str
    config: TaskConfig
    train_data: InMemoryClientData
    test_data: InMemoryClientData
    build_model: Callable[[int], tf.keras.Model]
    scoring: Scoring = dataclasses.field(default_factory=Scoring)
    model_name: str = ""
    data_file: str = ""
    description: str = ""
    # Text tasks: sentences -> model-ready (x, y) rows, prepared as the task's own
    # examples are (memorisation canaries write text through it).
    encode_text: Callable[[list[str]], tuple[np.ndarray, np.ndarray]] | None = None
    # --partition other than natural: the partition's summary (tasks.partition.summary).
    partition: dict | None = None

    def data_summary(self) -> dict:
        """Which data a run used, for hparams.json (file, clients, examples)."""
        def examples(data: InMemoryClientData) -> int:
            return sum(data.num_examples(c) for c in data.client_ids)

        return {"file": self.data_file, "description": self.description,
                "model": self.model_name, "primary_metric": self.scoring.primary,
                "train_clients": len(self.train_data.client_ids),
                "test_clients": len(self.test_data.client_ids),
                "train_examples": examples(self.train_data),
                "test_examples": examples(self.test_data),
                **({"partition": self.partition} if self.partition else {})}

    def to_batches(self, dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
        """(x, y) examples to (x, y) batches."""
        return dataset.batch(batch_size)

    def preprocess_train(self, dataset: tf.data.Dataset, seed: int) -> tf.data.Dataset:
        """One client's training batches: capped, seeded shuffle, epochs, batched."""
        if self.config.max_elements_per_client:
            dataset = dataset.take(self.config.max_elements_per_client)
        dataset = dataset.shuffle(
            SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True
        ).repeat(self.config.client_epochs_per_round)
        return self.to_batches(dataset, self.config.client_batch_size)

    def loss(self) -> tf.keras.losses.Loss:
        """The training loss on the model's outputs."""
        return self.scoring.loss()

    def metrics(self) -> list[tf.keras.metrics.Metric]:
        """Metrics reported during training (column train_<name>)."""
        return self.scoring.train_metrics()

    def input_spec(self):
        """Element spec of one training batch, as TFF's model wrapper wants it."""
        example = self.train_data.create_tf_dataset_for_client(
            self.train_data.client_ids[0]
        )
        return self.preprocess_train(example, 0).element_spec

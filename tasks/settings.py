"""The task-level flags (the data side of a run), declared once for every task.

Kept free of TensorFlow, so that a binary can define and parse its flags (and
answer --help) before TensorFlow loads.
"""

from __future__ import annotations

import dataclasses

from experiments.core.settings import setting
from tasks.partition import PARTITIONS

# Where a SQLite split's prepared examples live (tasks.client_store).
DATA_STORES = ("disk", "memory")
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
    data_store: str = setting(
        "disk", "disk: each split converted once into a memory-mapped store beside its "
        "file, so memory follows the cohort; memory: parsed into memory on every run.",
        DATA_STORES)
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

"""Every experiment setting, defined once: the dataclass, its flags, its checks.

`ExperimentConfig` is what the process builder, the loop and the results
layout consume; the absl flags of every binary are generated from its fields
(so a flag and its default cannot drift apart), and `validate` turns bad
values into one-line UsageErrors naming the flag and what would be valid.
"""

from __future__ import annotations

import dataclasses
import math
import typing

from absl import flags

from experiments.errors import UsageError
from tasks.task import TaskConfig

# local: one training client alone (experiments.participation), for comparison.
ALGORITHMS = ("fedavg", "fedavg_unweighted", "fedsgd", "fedprox", "centralized", "local")
SERVER_OPTIMIZERS = ("sgd", "sgdm", "adam", "yogi", "adagrad")
DP_MECHANISMS = ("none", "fixed", "adaptive", "tree", "local")
CLIENT_SAMPLINGS = ("uniform", "poisson", "cyclic")
COMPRESSIONS = ("none", "quantize", "rotate_quantize", "random_mask", "low_rank", "tff")
# Each compression setting and the methods it applies to (elsewhere it must stay
# at its default, and reports leave it blank).
COMPRESSION_SETTINGS = {"quantization_bits": ("quantize", "rotate_quantize"),
                        "keep_fraction": ("random_mask",), "rank": ("low_rank",)}
# Secure aggregation, outliers and robust aggregation (experiments.robust,
# experiments.secure_aggregation, experiments.outliers).
AGGREGATORS = ("mean", "median", "trimmed_mean", "norm_clip", "secure_sum", "tff_secure")
# Text tasks' splits (tasks.stackoverflow_word / _tag have test and heldout).
EVAL_SPLITS = ("test", "heldout")
OUTLIER_KINDS = ("label_flip", "constant_label", "scaled_random")
CANARY_TASKS = ("emnist_character", "shakespeare_character", "stackoverflow_word")


def _f(default, help_text: str, choices: tuple[str, ...] | None = None):
    return dataclasses.field(
        default=default, metadata={"help": help_text, "choices": choices}
    )


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One experiment's full configuration (flag name = field name)."""

    # Task and data.
    task: str = _f("emnist_character", "Task name from tasks.registry.")
    model: str = _f("", "Model architecture, one of the task's (empty: the task's default; "
                    "emnist_character: cnn_dropout, cnn, 2nn, logistic).")
    only_digits: bool = _f(False, "EMNIST: 10 digit classes instead of 62.")
    data_dir: str = _f(
        "", "Folder with TFF's dataset files (default: $TFF_DATA_DIR, else ~/.tff)."
    )
    client_epochs_per_round: int = _f(1, "Local epochs per round on each client.")
    client_batch_size: int = _f(20, "Client minibatch size.")
    max_elements_per_client: int = _f(
        0, "Use at most this many examples per client (0: all)."
    )
    # Text tasks (tasks.stackoverflow_word / _tag, tasks.shakespeare); see README "Tasks".
    vocab_size: int = _f(10_000, "stackoverflow_word / stackoverflow_tag: the most frequent "
                         "words kept (others are out-of-vocabulary).")
    tag_vocab_size: int = _f(500, "stackoverflow_tag: the most frequent tags predicted.")
    sequence_length: int = _f(0, "Tokens per sequence (0: the task's default, "
                              "stackoverflow_word 20, shakespeare_character 80).")
    eval_split: str = _f("test", "Split scored on eval rounds: test (final numbers) or "
                         "heldout (validation; stackoverflow tasks).", EVAL_SPLITS)
    # Algorithm.
    algorithm: str = _f("fedavg", "Learning algorithm.", ALGORITHMS)
    proximal_strength: float = _f(0.01, "FedProx proximal term strength mu.")
    client_learning_rate: float = _f(0.1, "Client SGD learning rate.")
    server_optimizer: str = _f("sgd", "Server optimizer (FedOpt).", SERVER_OPTIMIZERS)
    server_learning_rate: float = _f(1.0, "Server learning rate.")
    server_sgd_momentum: float = _f(0.9, "Momentum for --server_optimizer=sgdm.")
    server_beta_1: float = _f(0.9, "First-moment decay for adam / yogi.")
    server_beta_2: float = _f(0.999, "Second-moment decay for adam / yogi.")
    server_epsilon: float = _f(1e-3, "Adaptivity epsilon (tau) for adam / yogi / adagrad.")
    server_initial_accumulator_value: float = _f(
        0.0, "Initial preconditioner value for yogi / adagrad."
    )
    # User-level differential privacy (on --algorithm=fedavg_unweighted).
    dp: str = _f("none", "DP mechanism: fixed clip (McMahan et al. 2018), adaptive "
                 "clip (Andrew et al. 2021), tree (DP-FTRL), local.", DP_MECHANISMS)
    noise_multiplier: float = _f(0.0, "Gaussian noise std as a multiple of the clip.")
    clip: float = _f(1.0, "L2 clip of each client update (fixed, tree, local).")
    initial_clip: float = _f(0.1, "Adaptive clipping: initial clip.")
    target_unclipped_quantile: float = _f(0.5, "Adaptive clipping: target quantile.")
    adaptive_clip_learning_rate: float = _f(0.2, "Adaptive clipping: learning rate.")
    clipped_count_stddev: float = _f(
        0.0, "Adaptive clipping: noise on the clipped count (0: 0.05 * clients_per_round).")
    client_sampling: str = _f(
        "uniform", "uniform: K clients without replacement; poisson: each client with "
        "probability K/N; cyclic: a fixed permutation in passes (for tree).",
        CLIENT_SAMPLINGS)
    delta: float = _f(0.0, "DP delta (0: 1 / population^1.1).")
    target_epsilon: float = _f(
        0.0, "If > 0, use the smallest --noise_multiplier reaching this epsilon "
        "after --total_rounds.")
    # Model aggregator, secure aggregation and outlier clients.
    aggregator: str = _f(
        "mean", "mean (TFF's), median / trimmed_mean (coordinate-wise), norm_clip (clip "
        "each update's L2 norm, then mean), secure_sum (Bonawitz et al. 2017 simulated on "
        "quantised updates), tff_secure (tff.learning.secure_aggregator).", AGGREGATORS)
    trimmed_mean_fraction: float = _f(
        0.1, "trimmed_mean: fraction of clients dropped at each end, per coordinate.")
    norm_clip: float = _f(1.0, "norm_clip: L2 bound of each client update.")
    secagg_bits: int = _f(16, "secure_sum: bits per quantised coordinate (2..40).")
    secagg_range: float = _f(
        1.0, "secure_sum: coordinates are clipped to [-range, range] before quantising.")
    secagg_threshold: float = _f(
        0.6, "secure_sum: Shamir threshold t as a fraction of the round's clients.")
    secagg_dropout: float = _f(
        0.0, "secure_sum: fraction of the round's clients that drop after the keys are "
        "shared (their pairwise masks are recovered, their update is lost).")
    outlier_fraction: float = _f(
        0.0, "Fraction of training clients that are outliers (seeded choice).")
    outlier_kind: str = _f(
        "label_flip", "label_flip: label y -> C-1-y; constant_label: every label is "
        "--outlier_label; scaled_random: the update is replaced by a random direction "
        "of --outlier_scale times the honest update's norm.", OUTLIER_KINDS)
    outlier_label: int = _f(0, "constant_label: the label outliers always report.")
    outlier_scale: float = _f(
        10.0, "scaled_random: norm of the random update / norm of the honest one.")
    # Compressed client updates (experiments.compression).
    compression: str = _f(
        "none", "Upload compression: quantize (stochastic uniform), rotate_quantize "
        "(randomized Hadamard + quantize), random_mask (seeded subsampling), low_rank "
        "(structured updates), tff (tff.learning.compression_aggregator).", COMPRESSIONS)
    quantization_bits: int = _f(8, "quantize / rotate_quantize: bits per coordinate (1..16).")
    keep_fraction: float = _f(0.1, "random_mask: probability each coordinate is sent.")
    rank: int = _f(4, "low_rank: rank of each kernel's update.")
    # C-MAPSS turbofan RUL and heat-map tasks (tasks.cmapss, tasks.heatmap), client
    # participation switches (experiments.participation).
    cmapss_subsets: str = _f("FD001,FD003", "cmapss_rul: NASA sub-datasets whose train and "
                             "test engines are used, comma-separated (FD001..FD004).")
    cmapss_clients: int = _f(80, "cmapss_rul: training clients (factories).")
    cmapss_engines_per_client: int = _f(4, "cmapss_rul: engines per training client; the "
                                        "other engines are held out for testing.")
    cmapss_split_seed: int = _f(0, "cmapss_rul: seed of the engines' partition.")
    heatmap_grid: int = _f(12, "heatmap: the map is a grid of this many cells per side.")
    heatmap_users: int = _f(24, "heatmap: honest users (training clients).")
    heatmap_readings: int = _f(8, "heatmap: readings each user reports.")
    heatmap_spread: float = _f(1.5, "heatmap: std (cells) of a user's readings around home.")
    heatmap_outliers: int = _f(0, "heatmap: extra users with a broken thermometer (every "
                               "reading cold).")
    heatmap_outlier_readings: int = _f(0, "heatmap: readings of each outlier (0: "
                                       "--heatmap_readings).")
    heatmap_location_noise: float = _f(0.0, "heatmap: privacy slider, std (cells) of the "
                                       "Gaussian noise on each reported location.")
    heatmap_map_seed: int = _f(0, "heatmap: seed of the true map and of the users.")
    non_participants: int = _f(0, "The first this many training clients never join the "
                               "federation (they only train locally: --algorithm=local).")
    local_client: int = _f(0, "--algorithm=local: index of the training client trained "
                           "alone.")
    failed_clients: int = _f(0, "This many participating clients (seeded choice) fail: "
                             "they stop training from --fail_at_round on.")
    fail_at_round: int = _f(1, "The round from which --failed_clients stop training.")
    # Populations, personalisation, memorisation audit (experiments.population,
    # experiments.personalization, experiments.canaries; README section of that name).
    availability: float = _f(
        1.0, "Mean chance a client is eligible (charging, on Wi-Fi, idle) in a round; each "
        "client has a seeded profile of that mean (1: every client always eligible).")
    availability_period: int = _f(
        0, "Rounds per simulated day: eligibility follows a daily cycle with a seeded "
        "phase per client (0: no cycle).")
    dropout_rate: float = _f(0.0, "Chance a selected client fails before reporting.")
    device_speed_sigma: float = _f(
        0.5, "Log-std of the seeded log-normal per-client device speed (median 1).")
    round_deadline: float = _f(
        0.0, "Simulated seconds after which a client's report is discarded (0: none).")
    over_selection: float = _f(
        0.0, "Select ceil((1 + x) K) eligible clients, aggregate the first K reports "
        "(--client_sampling=uniform).")
    personalization_steps: int = _f(
        0, "On eval rounds, fine-tune the global model for this many local SGD steps on "
        "each test client's own training data and score it on its test data (0: off).")
    personalization_learning_rate: float = _f(
        0.0, "SGD rate of the personalisation fine-tuning (0: --client_learning_rate).")
    canaries: int = _f(
        0, "Memorisation audit: this many canaries (EMNIST: an image copied with a random "
        "wrong label; text tasks: 'my secret number is' and random digits), each inserted "
        "into one seeded training client, plus as many never-inserted controls.")
    canary_repeats: int = _f(10, "Copies of each canary in its client's training data.")
    # Schedule.
    total_rounds: int = _f(100, "Number of federated rounds.")
    clients_per_round: int = _f(10, "Clients sampled per round (uniform, no replacement).")
    seed: int = _f(0, "Seed for model init, client sampling and client shuffling.")
    rounds_per_eval: int = _f(10, "Evaluate every this many rounds (and at the end).")
    rounds_per_checkpoint: int = _f(5, "Checkpoint every this many rounds (and at the end).")
    eval_batch_size: int = _f(500, "Batch size for evaluation passes.")
    # Output.
    root_output_dir: str = _f("results", "Root folder of all experiment folders.")
    experiment_name: str = _f(
        "", "Experiment folder name (default: built from task, algorithm and seed)."
    )
    overwrite: bool = _f(
        False, "Replace an existing experiment of this name that has another config."
    )
    progress: bool = _f(True, "Show a progress bar on a terminal.")
    memory_budget_mb: int = _f(
        0, "Refuse to start if a round would need more memory than this (0: the "
        "memory available on the machine).")

    def task_config(self) -> TaskConfig:
        """The data-side settings, as the task registry takes them."""
        return TaskConfig(
            data_dir=self.data_dir or None,
            model=self.model,
            only_digits=self.only_digits,
            client_epochs_per_round=self.client_epochs_per_round,
            client_batch_size=self.client_batch_size,
            max_elements_per_client=self.max_elements_per_client or None,
            eval_batch_size=self.eval_batch_size,
            vocab_size=self.vocab_size,
            tag_vocab_size=self.tag_vocab_size,
            sequence_length=self.sequence_length,
            eval_split=self.eval_split,
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(TaskConfig)
               if f.name.startswith(("cmapss_", "heatmap_"))},
        )

    def name(self) -> str:
        """The experiment folder name."""
        return self.experiment_name or f"{self.task}_{self.algorithm}_seed{self.seed}"

    def as_dict(self) -> dict:
        """All settings as plain JSON-able values."""
        return dataclasses.asdict(self)


# Settings that may change between a run and its resumption: they do not
# alter the trajectory of rounds already written.
RESUMABLE_FIELDS = frozenset(
    {"total_rounds", "overwrite", "progress", "data_dir", "root_output_dir",
     "memory_budget_mb",
     "rounds_per_checkpoint"}
)


def defaults() -> dict:
    """Every setting's default, as recorded in hparams.json."""
    return ExperimentConfig().as_dict()


def define_flags() -> None:
    """Registers one absl flag per ExperimentConfig field (idempotent)."""
    hints = typing.get_type_hints(ExperimentConfig)
    for field in dataclasses.fields(ExperimentConfig):
        if field.name in flags.FLAGS:
            continue
        kind, meta = hints[field.name], field.metadata
        if meta["choices"]:
            flags.DEFINE_enum(field.name, field.default, meta["choices"], meta["help"])
        elif kind is bool:
            flags.DEFINE_bool(field.name, field.default, meta["help"])
        elif kind is int:
            flags.DEFINE_integer(field.name, field.default, meta["help"])
        elif kind is float:
            flags.DEFINE_float(field.name, field.default, meta["help"])
        else:
            flags.DEFINE_string(field.name, field.default, meta["help"])


def from_flags() -> ExperimentConfig:
    """The config the parsed flags describe, validated."""
    values = {f.name: flags.FLAGS[f.name].value for f in dataclasses.fields(ExperimentConfig)}
    config = ExperimentConfig(**values)
    validate(config)
    return config


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def _each(config: ExperimentConfig, names: tuple[str, ...],
          ok: typing.Callable[[float], bool], requirement: str) -> None:
    """Requires `ok(value)` of each named setting; the error names flag and value."""
    for name in names:
        value = getattr(config, name)
        _require(ok(value), f"--{name}={value} {requirement}")


def validate(config: ExperimentConfig) -> None:
    """Raises a UsageError naming the first bad flag and what would be valid."""
    _each(config, ("total_rounds", "clients_per_round", "client_batch_size",
                   "client_epochs_per_round", "rounds_per_eval",
                   "rounds_per_checkpoint", "eval_batch_size"),
          lambda v: v >= 1, "must be a positive integer")
    _require(config.memory_budget_mb >= 0,
             f"--memory_budget_mb={config.memory_budget_mb} must be >= 0 (0: what the "
             f"machine has available)")
    _require(config.max_elements_per_client >= 0,
             f"--max_elements_per_client={config.max_elements_per_client} must be "
             f">= 0 (0 means all)")
    _each(config, ("client_learning_rate", "server_learning_rate"),
          lambda v: math.isfinite(v) and v > 0, "must be a finite number > 0")
    _each(config, ("server_sgd_momentum", "server_beta_1", "server_beta_2"),
          lambda v: 0 <= v < 1, "must be in [0, 1)")
    _each(config, ("server_epsilon",), lambda v: v > 0, "must be > 0")
    _each(config, ("server_initial_accumulator_value", "proximal_strength"),
          lambda v: v >= 0, "must be >= 0")
    _require(config.algorithm == "fedprox" or config.proximal_strength ==
             ExperimentConfig.proximal_strength,
             "--proximal_strength only applies to --algorithm=fedprox")
    _validate_dp(config)
    _validate_robustness(config)
    _validate_compression(config)
    _validate_population(config)
    _validate_tasks_and_participation(config)
    _validate_text_tasks(config)
    name = config.name()
    _require(name not in (".", "..") and "/" not in name and name.strip() == name,
             f"--experiment_name={name!r} must be a plain folder name (no '/')")


def _validate_dp(config: ExperimentConfig) -> None:
    if config.dp == "none":
        for name in ("noise_multiplier", "target_epsilon"):
            _require(getattr(config, name) == 0,
                     f"--{name} needs a DP mechanism: set --dp=fixed|adaptive|tree|local")
        _require(config.client_sampling != "cyclic",
                 "--client_sampling=cyclic goes with --dp=tree")
        return
    _require(config.algorithm == "fedavg_unweighted",
             f"--dp={config.dp} needs --algorithm=fedavg_unweighted (got "
             f"{config.algorithm}): with example weighting one client's influence is "
             f"not bounded by the clip")
    _require(math.isfinite(config.noise_multiplier) and config.noise_multiplier >= 0,
             f"--noise_multiplier={config.noise_multiplier} must be a finite number >= 0")
    _each(config, ("clip", "initial_clip"), lambda v: v > 0, "must be > 0")
    _each(config, ("target_unclipped_quantile",), lambda v: 0 < v < 1, "must be in (0, 1)")
    _each(config, ("adaptive_clip_learning_rate", "clipped_count_stddev"),
          lambda v: v >= 0, "must be >= 0")
    _require(0 <= config.delta < 1, f"--delta={config.delta} must be in (0, 1)")
    _require(config.target_epsilon >= 0 and math.isfinite(config.target_epsilon),
             f"--target_epsilon={config.target_epsilon} must be a finite number > 0")
    _require(config.target_epsilon == 0 or config.noise_multiplier == 0,
             "--target_epsilon and --noise_multiplier are alternatives; give one")
    _require((config.dp == "tree") == (config.client_sampling == "cyclic"),
             "--dp=tree needs --client_sampling=cyclic (each client at most once per "
             "pass, as tree accounting assumes), and cyclic goes with tree only")


def _validate_robustness(config: ExperimentConfig) -> None:
    """Aggregator, secure aggregation and outlier flags (see README, "Secure
    aggregation, outliers and robust aggregation")."""
    agg, default = config.aggregator, ExperimentConfig
    only = {"trimmed_mean_fraction": "trimmed_mean", "norm_clip": "norm_clip",
            "secagg_bits": "secure_sum", "secagg_range": "secure_sum",
            "secagg_threshold": "secure_sum", "secagg_dropout": "secure_sum"}
    for name, owner in only.items():
        _require(agg == owner or getattr(config, name) == getattr(default, name),
                 f"--{name} only applies to --aggregator={owner}")
    _require(0 <= config.trimmed_mean_fraction < 0.5,
             f"--trimmed_mean_fraction={config.trimmed_mean_fraction} must be in [0, 0.5)")
    _each(config, ("norm_clip", "secagg_range", "outlier_scale"),
          lambda v: math.isfinite(v) and v > 0, "must be a finite number > 0")
    _require(2 <= config.secagg_bits <= 40,
             f"--secagg_bits={config.secagg_bits} must be in 2..40")
    _require(0 < config.secagg_threshold <= 1,
             f"--secagg_threshold={config.secagg_threshold} must be in (0, 1]")
    _require(0 <= config.secagg_dropout < 1,
             f"--secagg_dropout={config.secagg_dropout} must be in [0, 1)")
    _require(0 <= config.outlier_fraction <= 1,
             f"--outlier_fraction={config.outlier_fraction} must be in [0, 1]")
    _require(config.outlier_label >= 0,
             f"--outlier_label={config.outlier_label} must be a class index >= 0")
    _require(config.algorithm != "centralized" or (agg == "mean" and
                                                    config.outlier_fraction == 0),
             "--aggregator and --outlier_fraction apply to federated algorithms, "
             "not --algorithm=centralized")
    _require(agg == "mean" or config.dp == "none",
             f"--aggregator={agg} cannot be combined with --dp={config.dp}: DP clips "
             f"and noises the mean itself (use --aggregator=mean)")
    _require(agg not in ("median", "trimmed_mean", "secure_sum")
             or config.algorithm == "fedavg_unweighted",
             f"--aggregator={agg} needs --algorithm=fedavg_unweighted (it ignores "
             f"example weights)")
    _require(agg == "mean" or getattr(config, "compression", "none") == "none",
             f"--aggregator={agg} cannot be combined with --compression (yet)")
    split = agg == "secure_sum" or (config.outlier_fraction > 0 and
                                    config.outlier_kind == "scaled_random")
    _require(not split or config.algorithm in ("fedavg", "fedavg_unweighted"),
             f"--aggregator=secure_sum and --outlier_kind=scaled_random need "
             f"--algorithm=fedavg or fedavg_unweighted (got {config.algorithm})")


def _validate_compression(config: ExperimentConfig) -> None:
    """Compression flags and the combinations that stay sound (README, "Compression")."""
    method, default = config.compression, ExperimentConfig
    for name, methods in COMPRESSION_SETTINGS.items():
        _require(method in methods or getattr(config, name) == getattr(default, name),
                 f"--{name} only applies to --compression={'|'.join(methods)}")
    _require(1 <= config.quantization_bits <= 16,
             f"--quantization_bits={config.quantization_bits} must be in 1..16")
    _require(0 < config.keep_fraction <= 1,
             f"--keep_fraction={config.keep_fraction} must be in (0, 1]")
    _require(config.rank >= 1, f"--rank={config.rank} must be a positive integer")
    if method == "none":
        return
    _require(config.algorithm != "centralized",
             f"--compression={method} applies to federated algorithms, not "
             f"--algorithm=centralized")
    _require(config.dp in ("none", "local"),
             f"--compression={method} cannot follow --dp={config.dp}: a decoded update can "
             f"exceed the clip, so the central noise would not cover one client; use "
             f"--dp=local (clip -> noise -> compress) or --compression=none")
    _require(config.aggregator == "mean",
             f"--compression={method} needs --aggregator=mean (got {config.aggregator}): "
             f"secure sums only reveal the sum, which per-client seeds and scales cannot "
             f"decode, and robust aggregators need whole updates")


def _validate_tasks_and_participation(config: ExperimentConfig) -> None:
    """Task-specific flags belong to their task; participation switches (the tasks
    check their own values when they load)."""
    default = ExperimentConfig
    for field in dataclasses.fields(ExperimentConfig):
        for prefix, task in (("cmapss_", "cmapss_rul"), ("heatmap_", "heatmap")):
            _require(not field.name.startswith(prefix) or config.task == task
                     or getattr(config, field.name) == getattr(default, field.name),
                     f"--{field.name} only applies to --task={task}")
    _each(config, ("non_participants", "local_client", "failed_clients"),
          lambda v: v >= 0, "must be >= 0")
    _each(config, ("fail_at_round",), lambda v: v >= 1, "must be a round number >= 1")
    if config.algorithm == "local":
        _require(config.aggregator == "mean" and config.outlier_fraction == 0
                 and config.compression == "none" and config.failed_clients == 0,
                 "--algorithm=local trains one client alone: --aggregator, "
                 "--outlier_fraction, --compression and --failed_clients do not apply")
    else:
        _require(config.local_client == 0, "--local_client only applies to --algorithm=local")


def _validate_text_tasks(config: ExperimentConfig) -> None:
    """Vocabulary, sequence and split flags of the text tasks (README, "Tasks")."""
    _each(config, ("vocab_size", "tag_vocab_size"), lambda v: v >= 1,
          "must be a positive integer")
    _require(config.sequence_length >= 0,
             f"--sequence_length={config.sequence_length} must be a positive integer "
             f"(0: the task's default)")
    owners = {"vocab_size": ("stackoverflow_word", "stackoverflow_tag"),
              "tag_vocab_size": ("stackoverflow_tag",),
              "sequence_length": ("stackoverflow_word", "shakespeare_character"),
              "eval_split": ("stackoverflow_word", "stackoverflow_tag")}
    for name, tasks in owners.items():
        _require(config.task in tasks or getattr(config, name) ==
                 getattr(ExperimentConfig, name),
                 f"--{name} only applies to --task={'|'.join(tasks)} "
                 f"(got --task={config.task})")


_POPULATION_DEFAULTS = {"availability": 1.0, "availability_period": 0, "dropout_rate": 0.0,
                        "round_deadline": 0.0, "over_selection": 0.0}


def _validate_population(config: ExperimentConfig) -> None:
    """Population, personalisation and audit flags (README, "Populations,
    personalisation and memorisation audit")."""
    _require(0 < config.availability <= 1,
             f"--availability={config.availability} must be in (0, 1] (1: always eligible)")
    _require(config.availability_period >= 0,
             f"--availability_period={config.availability_period} must be >= 0 (0: no cycle)")
    _require(config.availability_period == 0 or config.availability < 1,
             "--availability_period needs --availability below 1")
    _require(0 <= config.dropout_rate < 1,
             f"--dropout_rate={config.dropout_rate} must be in [0, 1)")
    _each(config, ("device_speed_sigma", "round_deadline", "over_selection"),
          lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0")
    _require(config.over_selection == 0 or config.client_sampling == "uniform",
             f"--over_selection needs --client_sampling=uniform (got "
             f"{config.client_sampling})")
    changed = [n for n, v in _POPULATION_DEFAULTS.items() if getattr(config, n) != v]
    _require(not changed or config.algorithm != "centralized",
             f"--{changed[0] if changed else ''} applies to federated algorithms, not "
             f"--algorithm=centralized")
    _require(config.target_epsilon == 0 or (config.availability == 1 and
                                            config.over_selection == 0),
             "--target_epsilon calibrates for K of N clients per round; with --availability "
             "or --over_selection give --noise_multiplier (metrics.csv reports the epsilon)")
    _each(config, ("personalization_steps", "canaries"), lambda v: v >= 0,
          "must be an integer >= 0")
    _each(config, ("personalization_learning_rate",), lambda v: v >= 0,
          "must be >= 0 (0: use --client_learning_rate)")
    _require(config.canary_repeats >= 1,
             f"--canary_repeats={config.canary_repeats} must be a positive integer")
    _require(config.canaries == 0 or config.task in CANARY_TASKS,
             f"--canaries applies to --task={'|'.join(CANARY_TASKS)} "
             f"(got --task={config.task})")

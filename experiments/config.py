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

ALGORITHMS = ("fedavg", "fedavg_unweighted", "fedsgd", "fedprox", "centralized")
SERVER_OPTIMIZERS = ("sgd", "sgdm", "adam", "yogi", "adagrad")
MODELS = ("cnn_dropout", "cnn", "2nn", "logistic")
DP_MECHANISMS = ("none", "fixed", "adaptive", "tree", "local")
CLIENT_SAMPLINGS = ("uniform", "poisson", "cyclic")


def _f(default, help_text: str, choices: tuple[str, ...] | None = None):
    return dataclasses.field(
        default=default, metadata={"help": help_text, "choices": choices}
    )


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One experiment's full configuration (flag name = field name)."""

    # Task and data.
    task: str = _f("emnist_character", "Task name from tasks.registry.")
    model: str = _f("cnn_dropout", "Model architecture for the task.", MODELS)
    only_digits: bool = _f(False, "EMNIST: 10 digit classes instead of 62.")
    data_dir: str = _f(
        "", "Folder with TFF's dataset files (default: $TFF_DATA_DIR, else ~/.tff)."
    )
    client_epochs_per_round: int = _f(1, "Local epochs per round on each client.")
    client_batch_size: int = _f(20, "Client minibatch size.")
    max_elements_per_client: int = _f(
        0, "Use at most this many examples per client (0: all)."
    )
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
     "rounds_per_checkpoint"}
)


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

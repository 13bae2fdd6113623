"""Every experiment setting, defined once: the dataclass and its flags.

`ExperimentConfig` is the binaries' edge: it is composed of the settings
groups that each concern declares beside its code (the task's data settings,
the server optimizer, DP, the aggregator, compression, outliers,
participation, the population, personalisation, canaries) plus the run's
own schedule and output settings. The absl flags of every binary are
generated from its fields (so a flag and its default cannot drift apart),
library code receives only the groups it needs (`core.settings.pick`), and
`validate` (experiments.config_checks) turns bad values into one-line
UsageErrors naming the flag and what would be valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing

from absl import flags

from experiments.aggregators.settings import (
    AGGREGATORS,
    COMPRESSION_SETTINGS,
    COMPRESSIONS,
    AggregatorSettings,
    CompressionSettings,
)
from experiments.algorithms.settings import SERVER_OPTIMIZERS, ServerOptimizerSettings
from experiments.config_checks import validate
from experiments.core.settings import pick, setting
from experiments.privacy.settings import DP_MECHANISMS, CanarySettings, DpSettings
from experiments.simulation.participation import ParticipationSettings
from experiments.simulation.population import PopulationSettings
from experiments.simulation.settings import OUTLIER_KINDS, OutlierSettings
from experiments.training.settings import PersonalizationSettings
from tasks.settings import EVAL_SPLITS, TaskConfig

# local: one training client alone (experiments.training.trainers), for comparison.
ALGORITHMS = ("fedavg", "fedavg_unweighted", "fedsgd", "fedprox", "scaffold", "mime_lite",
              "centralized", "local")
CLIENT_SAMPLINGS = ("uniform", "poisson", "cyclic")
# Re-exported: the validation below and the analysis layer use them by these names.
__all__ = ["AGGREGATORS", "COMPRESSIONS", "COMPRESSION_SETTINGS", "DP_MECHANISMS",
           "EVAL_SPLITS", "OUTLIER_KINDS", "SERVER_OPTIMIZERS", "ExperimentConfig",
           "validate"]


@dataclasses.dataclass(frozen=True)
class ExperimentConfig(CanarySettings, PersonalizationSettings, PopulationSettings,
                       ParticipationSettings, OutlierSettings, CompressionSettings,
                       AggregatorSettings, DpSettings, ServerOptimizerSettings, TaskConfig):
    """One experiment's full configuration (flag name = field name)."""

    task: str = setting("emnist_character", "Task name from tasks.registry.")
    # Algorithm and the clients' local training.
    algorithm: str = setting("fedavg", "Learning algorithm.", ALGORITHMS)
    proximal_strength: float = setting(0.01, "FedProx proximal term strength mu.")
    client_learning_rate: float = setting(0.1, "Client SGD learning rate.")
    client_sampling: str = setting(
        "uniform", "uniform: K clients without replacement; poisson: each client with "
        "probability K/N; cyclic: a fixed permutation in passes (for tree).",
        CLIENT_SAMPLINGS)
    # Schedule.
    total_rounds: int = setting(100, "Number of federated rounds.")
    clients_per_round: int = setting(10, "Clients sampled per round (uniform, no "
                                     "replacement).")
    rounds_per_eval: int = setting(10, "Evaluate every this many rounds (and at the end).")
    rounds_per_checkpoint: int = setting(5, "Checkpoint every this many rounds (and at the "
                                         "end).")
    # Output.
    root_output_dir: str = setting("results", "Root folder of all experiment folders.")
    experiment_name: str = setting(
        "", "Experiment folder name (default: task, algorithm, the headline settings that "
        "differ from their defaults, a hash of any other such setting, and the seed).")
    overwrite: bool = setting(
        False, "Replace an existing experiment of this name that has another config.")
    progress: bool = setting(True, "Show a progress bar on a terminal.")
    memory_budget_mb: int = setting(
        0, "Refuse to start if a round would need more memory than this (0: the "
        "memory available on the machine).")

    def task_config(self) -> TaskConfig:
        """The data-side settings, as the task registry takes them."""
        return pick(TaskConfig, self)

    def name(self) -> str:
        """The experiment folder name: --experiment_name, else one derived from the
        settings, so that runs differing in any setting get different folders."""
        return self.experiment_name or default_name(self)

    def as_dict(self) -> dict:
        """All settings as plain JSON-able values."""
        return dataclasses.asdict(self)


# Settings that may change between a run and its resumption: they do not
# alter the trajectory of rounds already written.
RESUMABLE_FIELDS = frozenset(
    {"total_rounds", "overwrite", "progress", "data_dir", "root_output_dir",
     "memory_budget_mb", "data_store",
     "rounds_per_checkpoint"}
)


# Default names: these settings appear as tags when they differ from their defaults
# (tag prefix, in this order); any other differing setting, except those that may
# change on resumption and the name's own parts, enters an 8-digit hash.
_NAME_TAGS = {"model": "", "partition": "", "dp": "dp-", "noise_multiplier": "z",
              "target_epsilon": "eps", "clip": "clip", "clients_per_round": "k",
              "client_learning_rate": "lr", "aggregator": "", "compression": ""}
_NOT_NAMED = {"task", "algorithm", "seed", "experiment_name", "overwrite", "progress"}


def default_name(config: ExperimentConfig) -> str:
    """`<task>_<algorithm>[_<tags>][_h<hash>]_seed<seed>`, filesystem-safe and stable
    (the same settings always give the same name)."""
    defaults_ = ExperimentConfig()
    differing = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                 if getattr(config, f.name) != getattr(defaults_, f.name)
                 and f.name not in _NOT_NAMED | RESUMABLE_FIELDS}
    tags = [f"{prefix}{differing.pop(name)}" for name, prefix in _NAME_TAGS.items()
            if name in differing]
    if differing:
        text = json.dumps(differing, sort_keys=True, default=str)
        tags.append("h" + hashlib.sha256(text.encode()).hexdigest()[:8])
    name = "_".join([config.task, config.algorithm, *tags, f"seed{config.seed}"])
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)


def resumable(config: ExperimentConfig) -> frozenset:
    """RESUMABLE_FIELDS for this run: --dp=banded_mf's noise follows a strategy
    optimised for --total_rounds, so its runs cannot be extended."""
    return RESUMABLE_FIELDS - ({"total_rounds"} if config.dp == "banded_mf" else set())


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

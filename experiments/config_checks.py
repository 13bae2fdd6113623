"""The checks of an experiment's settings: one-line UsageErrors naming the flag.

`validate` is what `experiments.config.from_flags` (and every binary) runs
before anything is built or written; each `_validate_*` covers one concern's
flags and the combinations across concerns whose guarantees would not hold.
A setting's default is read from the config's class, so the checks need no
import of it at run time.
"""

from __future__ import annotations

import dataclasses
import math
import typing

from experiments.aggregators.settings import COMPRESSION_SETTINGS, parse_stages
from experiments.core.errors import UsageError

if typing.TYPE_CHECKING:
    from experiments.config import ExperimentConfig

CANARY_TASKS = ("emnist_character", "shakespeare_character", "stackoverflow_word")


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
             type(config).proximal_strength,
             "--proximal_strength only applies to --algorithm=fedprox")
    _validate_second_upload(config)
    _validate_kept_models(config)
    _validate_dp(config)
    _validate_robustness(config)
    _validate_compression(config)
    _validate_population(config)
    _validate_tasks_and_participation(config)
    _validate_text_tasks(config)
    _validate_partition(config)
    name = config.name()
    _require(name not in (".", "..") and "/" not in name and name.strip() == name,
             f"--experiment_name={name!r} must be a plain folder name (no '/')")


def _validate_second_upload(config: ExperimentConfig) -> None:
    """SCAFFOLD's clients also upload a control-variate change, Mime-Lite's a full-batch
    gradient: the DP, secure sum and compression paths cover one vector, so their
    guarantees would not hold."""
    name = config.algorithm
    if name not in ("scaffold", "mime_lite"):
        return
    second = "a control-variate change" if name == "scaffold" else "a full-batch gradient"
    uncovered = (f"its clients also upload {second}, which DP, secure sums and compression "
                 f"here do not cover")
    checks = [("dp", "none", uncovered), ("aggregator", "mean", uncovered),
              ("compression", "none", uncovered)]
    if name == "scaffold":
        checks.append(("server_optimizer", "sgd", "its server step is SGD at "
                       "--server_learning_rate"))
    _require_own_round(config, f"--algorithm={name}", checks, "it replaces the model "
                                                              "update only")


def _require_own_round(config: ExperimentConfig, who: str,
                       checks: list[tuple[str, str, str]], outlier_reason: str) -> None:
    """An algorithm that runs its round outside the aggregator chain: each (flag, the
    only value it takes, why) holds, and no outlier replaces whole updates."""
    for flag, plain, why in checks:
        value = getattr(config, flag)
        _require(value == plain, f"{who} needs --{flag}={plain} (got {value}): {why}")
    _require(not (config.outlier_fraction > 0 and config.outlier_kind == "scaled_random"),
             f"{who} cannot take --outlier_kind=scaled_random ({outlier_reason})")


def _validate_kept_models(config: ExperimentConfig) -> None:
    """Ditto's personal models never leave the clients, so any federated algorithm (DP
    included) keeps its guarantees; local layers run their own round outside the
    aggregator chain, so DP, secure sums, compression and robust aggregators are refused."""
    _require(math.isfinite(config.ditto_lambda) and config.ditto_lambda >= 0,
             f"--ditto_lambda={config.ditto_lambda} must be a finite number >= 0")
    _require(config.local_layers >= 0, f"--local_layers={config.local_layers} must be >= 0")
    if config.ditto_lambda == 0 and config.local_layers == 0:
        return
    _require(config.ditto_lambda == 0 or config.local_layers == 0,
             "--ditto_lambda and --local_layers are two ways to personalise; use one")
    _require(config.algorithm not in ("centralized", "local"),
             f"--ditto_lambda and --local_layers personalise federated training, not "
             f"--algorithm={config.algorithm}")
    if config.local_layers == 0:
        return
    _require(config.algorithm in ("fedavg", "fedavg_unweighted"),
             f"--local_layers needs --algorithm=fedavg or fedavg_unweighted (got "
             f"{config.algorithm})")
    why = "its round (shared layers up, SGD at the server) runs outside the aggregator chain"
    _require_own_round(config, "--local_layers",
                       [(flag, plain, why) for flag, plain in (
                           ("dp", "none"), ("aggregator", "mean"), ("compression", "none"),
                           ("server_optimizer", "sgd"))],
                       "it replaces whole updates")


def _validate_dp(config: ExperimentConfig) -> None:
    if config.dp == "none":
        for name in ("noise_multiplier", "target_epsilon", "noise_cohort_size",
                     "simulated_population"):
            _require(getattr(config, name) == 0,
                     f"--{name} needs a DP mechanism: set --dp=fixed|adaptive|tree|local")
        _require(config.client_sampling != "cyclic",
                 "--client_sampling=cyclic goes with --dp=tree or banded_mf")
        _require(config.bands == type(config).bands, "--bands only applies to --dp=banded_mf")
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
    _require((config.dp in ("tree", "banded_mf")) == (config.client_sampling == "cyclic"),
             "--dp=tree and --dp=banded_mf need --client_sampling=cyclic (each client at "
             "most once per pass, as their accounting assumes), and cyclic goes with them "
             "only")
    _require(config.dp == "banded_mf" or config.bands == type(config).bands,
             "--bands only applies to --dp=banded_mf")
    _require(config.bands >= 1, f"--bands={config.bands} must be a positive integer")
    _require(config.dp != "banded_mf" or config.simulated_population == 0,
             "--simulated_population cannot be combined with --dp=banded_mf (its strategy "
             "follows the real clients' cyclic participation)")
    _validate_simulated_deployment(config)
    _validate_distributed(config)


def _validate_distributed(config: ExperimentConfig) -> None:
    """--dp=distributed: discrete noise shares summed by a secure aggregator."""
    own = ("num_bits", "beta", "k_stddevs", "rotation_type", "distributed_noise")
    if config.dp != "distributed":
        for name in own:
            _require(getattr(config, name) == getattr(type(config), name),
                     f"--{name} only applies to --dp=distributed")
        return
    agg = config.aggregator
    _require(agg in ("secure_sum", "tff_secure"),
             f"--dp=distributed needs a secure sum, --aggregator=secure_sum or tff_secure "
             f"(got {agg}): without one the server sees each client's update with only "
             f"its 1/sqrt(n) share of the noise")
    most = 22 if agg == "tff_secure" else 32
    _require(1 <= config.num_bits <= most,
             f"--num_bits={config.num_bits} must be in 1..{most} with --aggregator={agg}")
    _require(0 <= config.beta < 1, f"--beta={config.beta} must be in [0, 1)")
    _require(math.isfinite(config.k_stddevs) and config.k_stddevs > 0,
             f"--k_stddevs={config.k_stddevs} must be a finite number > 0")
    cohort = config.clients_per_round
    _require(2 ** (2 * config.num_bits) > cohort * config.k_stddevs ** 2
             and 2 ** config.num_bits >= cohort,
             f"--num_bits={config.num_bits} is too small for {cohort} clients per round "
             f"at --k_stddevs={config.k_stddevs}; raise --num_bits")
    for name in ("secagg_bits", "secagg_range"):
        _require(getattr(config, name) == getattr(type(config), name),
                 f"--{name} does not apply with --dp=distributed: its encoding is set by "
                 f"--clip, --num_bits and --k_stddevs")
    _require(config.simulated_population == 0,
             "--simulated_population cannot be combined with --dp=distributed: each "
             "client adds its own share of the noise, so the cohort is the real one")
    _require(config.client_sampling == "uniform",
             "--dp=distributed needs --client_sampling=uniform (a fixed cohort, so "
             "neighbouring data sets carry the same number of noise shares)")
    varying = [n for n, v in _POPULATION_DEFAULTS.items() if getattr(config, n) != v]
    if config.failed_clients > 0:
        varying.append("failed_clients")
    _require(not varying,
             f"--{varying[0] if varying else ''} cannot be combined with --dp=distributed: "
             f"it varies which clients' noise shares reach the sum, which the accounting "
             f"of fixed cohorts does not cover (--secagg_dropout, uniformly random, is "
             f"accounted)")


def _validate_simulated_deployment(config: ExperimentConfig) -> None:
    """--noise_cohort_size / --simulated_population: what the simulation can stand for."""
    _each(config, ("noise_cohort_size", "simulated_population"), lambda v: v >= 0,
          "must be an integer >= 0 (0: off)")
    if config.noise_cohort_size == 0 and config.simulated_population == 0:
        return
    _require(config.simulated_population > 0,
             "--noise_cohort_size needs --simulated_population (the population its "
             "cohorts are drawn from, which the accountant assumes)")
    _require(config.dp != "local",
             "--simulated_population applies to central DP (--dp=fixed|adaptive|tree); "
             "local DP noise does not depend on the cohort or the population")
    cohort = config.noise_cohort_size or config.clients_per_round
    _require(cohort <= config.simulated_population,
             f"--noise_cohort_size={cohort} must be at most --simulated_population="
             f"{config.simulated_population}")
    _require(config.availability == 1 and config.over_selection == 0,
             "--simulated_population cannot be combined with --availability or "
             "--over_selection: their varying cohorts are those of the real population")


def _validate_robustness(config: ExperimentConfig) -> None:
    """Aggregator, secure aggregation and outlier flags (see README, "Secure
    aggregation, outliers and robust aggregation")."""
    agg, default = config.aggregator, type(config)
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
    _require(agg == "mean" or getattr(config, "compression", "none") != "fetchsgd",
             f"--aggregator={agg} cannot be combined with --compression=fetchsgd (use "
             f"--aggregator=mean): robust aggregators need whole updates, and the secure "
             f"sums here add quantised updates, not sketch tables")
    _require(agg == "mean" or config.dp in ("none", "distributed"),
             f"--aggregator={agg} cannot be combined with --dp={config.dp}: DP clips "
             f"and noises the mean itself (use --aggregator=mean, or --dp=distributed "
             f"over a secure sum)")
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
    method, default = config.compression, type(config)
    if method == "fetchsgd":
        _require(not config.error_feedback,
                 "--error_feedback cannot be combined with --compression=fetchsgd: its "
                 "server already keeps what the top-k left out (the error sketch)")
        _require(config.dp == "none",
                 f"--compression=fetchsgd needs --dp=none (got {config.dp}): noise on the "
                 f"sketches and the top-k of a noisy sketch are not accounted here")
    for name, methods in COMPRESSION_SETTINGS.items():
        _require(method in methods or getattr(config, name) == getattr(default, name),
                 f"--{name} only applies to --compression={'|'.join(methods)}")
    _require(1 <= config.quantization_bits <= 16,
             f"--quantization_bits={config.quantization_bits} must be in 1..16")
    _require(0 < config.keep_fraction <= 1,
             f"--keep_fraction={config.keep_fraction} must be in (0, 1]")
    _require(config.rank >= 1, f"--rank={config.rank} must be a positive integer")
    _require(config.sketch_rows >= 1,
             f"--sketch_rows={config.sketch_rows} must be a positive integer")
    _each(config, ("sketch_columns_fraction", "topk_fraction"), lambda v: 0 < v <= 1,
          "must be in (0, 1]")
    if method == "pipeline":
        try:
            parse_stages(config.compression_stages)
        except ValueError as e:
            raise UsageError(f"--compression_stages={config.compression_stages!r}: "
                             f"{e}") from None
    if method == "none":
        return
    _require(not config.error_feedback or (config.dp == "none" and config.algorithm in (
        "fedavg", "fedavg_unweighted")),
             "--error_feedback needs --dp=none and --algorithm=fedavg or fedavg_unweighted: "
             "the residual a client carries would enter its next upload before any DP "
             "noise, which the accounting does not cover, and only FedAvg's round runs "
             "the clients' uploads in Python")
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


# Each partition setting and the partitions it applies to.
PARTITION_SETTINGS = {"partition_clients": ("iid", "shards", "dirichlet", "quantity_skew"),
                      "shards_per_client": ("shards",), "dirichlet_alpha": ("dirichlet",),
                      "quantity_sigma": ("quantity_skew",)}


def _validate_partition(config: ExperimentConfig) -> None:
    """--partition and its settings (tasks.partition checks what needs the data)."""
    for name, partitions in PARTITION_SETTINGS.items():
        _require(config.partition in partitions
                 or getattr(config, name) == getattr(type(config), name),
                 f"--{name} only applies to --partition={'|'.join(partitions)}")
    _each(config, ("partition_clients", "shards_per_client"), lambda v: v >= 1,
          "must be a positive integer")
    _each(config, ("dirichlet_alpha",), lambda v: math.isfinite(v) and v > 0,
          "must be a finite number > 0 (small: few labels per client)")
    _each(config, ("quantity_sigma",), lambda v: math.isfinite(v) and v >= 0,
          "must be a finite number >= 0")


def _validate_tasks_and_participation(config: ExperimentConfig) -> None:
    """Task-specific flags belong to their task; participation switches (the tasks
    check their own values when they load)."""
    default = type(config)
    for field in dataclasses.fields(type(config)):
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
                 getattr(type(config), name),
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

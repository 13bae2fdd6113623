"""Trains one experiment (federated or centralised) and writes its results folder.

    python -m experiments.train --flagfile=configs/emnist_fedavg_demo.cfg

Bad flags, missing data or a clashing experiment name end with one line on
stderr and exit code 2; TFF's worker process is stopped on every way out.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
import typing

from absl import flags

from experiments import config as config_lib
from experiments.core import binary, results, tff_worker
from experiments.core.settings import pick
from experiments.privacy import accounting
from experiments.privacy.settings import CanarySettings, DpSettings
from experiments.simulation import participation
from experiments.training.settings import PersonalizationSettings

if typing.TYPE_CHECKING:
    from tasks.task import Task

config_lib.define_flags()
flags.adopt_module_key_flags(config_lib)  # --helpshort lists the run's settings


def _resolve_privacy(config: config_lib.ExperimentConfig, task: Task
                     ) -> config_lib.ExperimentConfig:
    """Fills in delta and a calibrated noise multiplier, and says what was chosen.

    Both are computed on the population the trainer samples from: the training
    clients less the non-participants (or the simulated deployment's).
    """
    # Here, not at the top: TensorFlow stays out of the binary's start (--help).
    from experiments.training import federated_trainer

    client_ids = task.train_data.client_ids
    population = len(participation.federated_clients(config.non_participants, client_ids))
    # Only the distributed mechanism's accounting depends on the model's size.
    dimension = (federated_trainer.trainable_parameters(task.build_model(config.seed))
                 if config.dp == "distributed" else 0)
    dp = accounting.resolve(pick(DpSettings, config), config.clients_per_round,
                            config.client_sampling, population, config.total_rounds,
                            **federated_trainer.accounting_scope(config, dimension))
    resolved = dataclasses.replace(config, delta=dp.delta, noise_multiplier=dp.noise_multiplier)
    if config.target_epsilon > 0:
        print(f"noise_multiplier {resolved.noise_multiplier:.4f} reaches epsilon "
              f"{config.target_epsilon} (delta {resolved.delta:.3g}) after "
              f"{config.total_rounds} rounds", file=sys.stderr)
    return resolved


def train(config: config_lib.ExperimentConfig) -> tuple[str, dict]:
    """Runs the experiment the config describes; returns its folder and final row."""
    started = time.monotonic()  # the session's wall time counts from here
    name = config.name()  # from the flags as given, before delta and z are filled in
    # Here, not at the top: TensorFlow stays out of the binary's start (--help).
    from experiments.privacy import canaries
    from experiments.training import column_dictionary, loop, personalization, trainers
    from experiments.training.evaluation import Evaluator
    from tasks import registry

    with tff_worker.session():
        task = registry.get(config.task, config.task_config())
        task = canaries.insert(task, pick(CanarySettings, config), config.seed)  # audit
        if config.algorithm not in ("centralized", "local"):
            config = _resolve_privacy(config, task)
        trainer_cls = trainers.trainer_class(config.algorithm)
        trainer = trainer_cls(config, task)
        personal = pick(PersonalizationSettings, config)
        experiment = results.Experiment.open(
            config.root_output_dir, name, config.as_dict(),
            loop.columns(task.scoring, personalization.columns(
                config.personalization_steps, task.scoring, personal.keeps_personal_models),
                omit=loop.unfilled(
                    dp=config.dp != "none", secure_sum=config.aggregator == "secure_sum",
                    outliers=config.outlier_fraction > 0,
                    distributed=config.dp == "distributed")),
            overwrite=config.overwrite, resumable=config_lib.resumable(config),
            data={**task.data_summary(), **trainer.summary}, defaults=config_lib.defaults(),
            started=started)
        experiment.write_column_dictionary(column_dictionary.describe)
        evaluator = personalization.wrap(
            Evaluator(task, config.seed), task, personal,
            config.client_learning_rate, config.seed, experiment.path)
        final = loop.run(trainer, evaluator, experiment, config.total_rounds,
                         config.rounds_per_eval, config.rounds_per_checkpoint,
                         show_progress=config.progress)
    return experiment.path, final


def _privacy_text(final: dict) -> str:
    """`; epsilon 3.1 (RDP), delta 1e-06` for a DP run, naming what was accounted."""
    epsilon = final.get("epsilon_rdp")
    if epsilon is None or math.isnan(epsilon):  # no DP, or not accounted this round
        return ""
    return (f"; epsilon {epsilon:.3g} (RDP), delta {final['dp_delta']:.3g}, for cohorts "
            f"of {int(final['accounted_cohort']):,} of {int(final['accounted_population']):,}"
            f" clients")


def _train_and_report() -> None:
    path, final = train(config_lib.from_flags())
    if final:
        metric = next(k[len("naive_"):] for k in final if k.startswith("naive_"))
        print(f"final test {metric} {final['test_' + metric]:.4f} "
              f"(naive baseline {final['naive_' + metric]:.4f}) after round "
              f"{int(final['round'])}{_privacy_text(final)}")
    print(f"results: {os.path.abspath(path)}")


if __name__ == "__main__":
    binary.run("train", _train_and_report)

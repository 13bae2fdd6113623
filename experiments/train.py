"""Trains one experiment (federated or centralised) and writes its results folder.

    python -m experiments.train --flagfile=configs/emnist_fedavg_demo.cfg

Bad flags, missing data or a clashing experiment name end with one line on
stderr and exit code 2; TFF's worker process is stopped on every way out.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from experiments import config as config_lib
from experiments import errors, quiet_tf

config_lib.define_flags()


def _resolve_privacy(config: config_lib.ExperimentConfig, population: int
                     ) -> config_lib.ExperimentConfig:
    """Fills in delta and a calibrated noise multiplier, and says what was chosen."""
    from experiments import privacy

    resolved = privacy.resolve(config, population)
    if config.target_epsilon > 0:
        print(f"noise_multiplier {resolved.noise_multiplier:.4f} reaches epsilon "
              f"{config.target_epsilon} (delta {resolved.delta:.3g}) after "
              f"{config.total_rounds} rounds", file=sys.stderr)
    return resolved


def train(config: config_lib.ExperimentConfig) -> tuple[str, dict]:
    """Runs the experiment the config describes; returns its folder and final row."""
    from experiments import canaries, loop, participation, personalization, results, runtime
    from experiments.evaluation import Evaluator
    from tasks import registry

    with runtime.session():
        task = registry.get(config.task, config.task_config())
        task = canaries.insert(task, config)  # memorisation audit (--canaries)
        config = _resolve_privacy(config, len(task.train_data.client_ids))
        trainer_cls = participation.trainer_class(config.algorithm)
        trainer = trainer_cls(config, task)
        experiment = results.Experiment.open(
            config.root_output_dir, config.name(), config.as_dict(),
            loop.columns(task.scoring, personalization.columns(
                config.personalization_steps, task.scoring)),
            overwrite=config.overwrite, resumable=config_lib.RESUMABLE_FIELDS,
            data=task.data_summary(), defaults=config_lib.defaults())
        evaluator = personalization.wrap(Evaluator(task, config.seed), task, config,
                                         experiment.path)
        final = loop.run(trainer, evaluator, experiment, config.total_rounds,
                         config.rounds_per_eval, config.rounds_per_checkpoint,
                         show_progress=config.progress)
    return experiment.path, final


def main(argv: list[str]) -> None:
    quiet_tf.filter_stderr()
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TFF's INFO lines are noise to users
    if len(argv) > 1:
        print(f"train: error: unexpected arguments {argv[1:]}; flags look like "
              f"--name=value", file=sys.stderr)
        sys.exit(errors.exit_code())
    errors.guarded("train", _train_and_report)


def _train_and_report() -> None:
    path, final = train(config_lib.from_flags())
    if final:
        metric = next(k[len("naive_"):] for k in final if k.startswith("naive_"))
        print(f"final test {metric} {final['test_' + metric]:.4f} "
              f"(naive baseline {final['naive_' + metric]:.4f}) after round "
              f"{int(final['round'])}")
    print(f"results: {os.path.abspath(path)}")


if __name__ == "__main__":
    app.run(main, flags_parser=errors.flags_parser("train"))

"""The `ExperimentConfig` of each benchmark run: the fixed task and model, never stopping.

Every measurement trains through the project's own stack, so it describes
its run the way `experiments.train` would, with evaluation, checkpoints and
the round limit pushed out of reach.
"""

from __future__ import annotations

from typing import Any

from experiments.benchmark.settings import MODEL, SEED, TASK
from experiments.config import ExperimentConfig, validate

NEVER = 10**9  # total_rounds / rounds_per_eval that no benchmark run reaches


def experiment_config(data_dir: str, **overrides: Any) -> ExperimentConfig:
    """The validated config of a benchmark run on the EMNIST file in `data_dir`.

    Args:
      data_dir: folder holding emnist_all.sqlite (real or synthetic).
      **overrides: ExperimentConfig fields that differ from FedAvg on the
        benchmark's task, model and seed (e.g. clients_per_round, dp).

    Returns:
      The config, checked by `experiments.config.validate`.
    """
    settings: dict[str, Any] = dict(
        task=TASK, model=MODEL, algorithm="fedavg", data_dir=data_dir, seed=SEED,
        total_rounds=NEVER, rounds_per_eval=NEVER, rounds_per_checkpoint=NEVER,
        progress=False)
    settings.update(overrides)
    config = ExperimentConfig(**settings)
    validate(config)
    return config

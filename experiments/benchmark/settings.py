"""What the benchmark runs with: the fixed task, model and seed, and the checked flags.

The binary (`experiments/bench.py`) reads the flags and builds `Settings`;
the library only ever sees this dataclass.
"""

from __future__ import annotations

import dataclasses
import os

TASK = "emnist_character"
MODEL = "cnn_dropout"
SEED = 0


@dataclasses.dataclass(frozen=True)
class Settings:
    """The validated benchmark flags."""

    data_dir: str
    cohorts: tuple[int, ...]
    warmup_rounds: int
    rounds: int
    memory_round_a: int
    memory_round_b: int
    memory_dp_cohort: int
    output: str
    flower_python: str = ""  # empty: no Flower comparison
    flower_cohort: int = 10
    flower_cpus_per_client: float = 1.0
    flower_timeout: int = 3600
    populations: tuple[int, ...] = ()  # empty: no population section
    population_cohorts: tuple[int, ...] = (10, 100)
    population_rounds: int = 3
    population_memory_max: int = 30_000

    @property
    def markdown_path(self) -> str:
        """The markdown table's path: the JSON's name with .md."""
        return os.path.splitext(self.output)[0] + ".md"

"""The model-update aggregator chain (robust -> DP -> compression -> secure sum).

Each mechanism is one factory here plus its flags in `experiments.config`.
With none selected, TFF's default (a plain, possibly weighted, mean) is used.
"""

from __future__ import annotations

from experiments.config import ExperimentConfig


def build(config: ExperimentConfig):
    """The aggregation factory for the config, or None for TFF's default mean."""
    del config
    return None

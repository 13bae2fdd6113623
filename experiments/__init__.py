"""Experiment binaries and the federated learning-process code."""

from experiments import quiet_tf as _quiet_tf  # noqa: F401  (must run before TF loads)

"""Federated tasks: client data loading, preprocessing and models."""

from experiments import quiet_tf as _quiet_tf  # noqa: F401  (must run before TF loads)

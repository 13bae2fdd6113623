"""Federated tasks: client data loading, preprocessing and models."""

from experiments.core import (
    stderr_filter as _stderr_filter,  # noqa: F401  (must run before TF loads)
)

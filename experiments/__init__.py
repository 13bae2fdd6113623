"""Experiment binaries and the federated learning-process code."""

from experiments import errors as _errors

# Before TensorFlow loads: a Ctrl-C during the seconds of imports is one line.
_errors.take_stop_signals_early()

# Must run before TensorFlow loads: it filters TF's C++ start-up noise.
from experiments import quiet_tf as _quiet_tf  # noqa: E402, F401, I001

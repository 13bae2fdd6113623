"""Experiment binaries (train, sweep, bench, audit, privacy_plan) and their library packages.

Importing the package first makes a binary honour Ctrl-C and SIGTERM (before
TensorFlow's seconds of imports) and filters TensorFlow's start-up noise.
"""

from experiments.core import stops as _stops

# Before TensorFlow loads: a Ctrl-C during the seconds of imports is one line.
_stops.take_stop_signals_early()

# Must run before TensorFlow loads: it filters TF's C++ start-up noise.
from experiments.core import stderr_filter as _stderr_filter  # noqa: E402, F401, I001

"""Experiment binaries (train, sweep, bench, audit, privacy_plan) and their library packages.

Importing the package first makes a binary honour Ctrl-C and SIGTERM (before
TensorFlow's seconds of imports) and makes TensorFlow's first import quiet,
wherever it happens; the package itself does not load TensorFlow, so binaries
parse their flags (and answer --help) first.
"""

from experiments.core import stops as _stops

# Before TensorFlow loads: a Ctrl-C during the seconds of imports is one line.
_stops.take_stop_signals_early()

# Must run before TensorFlow loads: it hooks TF's first import to filter its C++ noise.
from experiments.core import stderr_filter as _stderr_filter  # noqa: E402, F401, I001

"""Tests that the stderr filter drops only the known-benign C++ lines."""

from __future__ import annotations

import os
import subprocess
import sys

from experiments.core.paths import REPO_ROOT

BENIGN = [
    "2026-11-29 19:37:32.591965: E tensorflow/compiler/xla/stream_executor/cuda/"
    "cuda_dnn.cc:9342] Unable to register cuDNN factory: Attempting to register "
    "factory for plugin cuDNN when one has already been registered",
    "2026-11-29 19:37:34.980889: E tensorflow/core/grappler/grappler_item_builder.cc:435]"
    " Failed to detect the fetch node(s), skipping this input",
    "I0000 00:00:1795983296.173248   17907 fork_posix.cc:71] Other threads are "
    "currently calling into gRPC, skipping fork() handlers",
]
REAL = "2026-11-29 19:40:00.000000: E tensorflow/core/framework/op_kernel.cc:1] OOM when " \
       "allocating tensor"


def test_filter_drops_benign_lines_and_keeps_real_errors() -> None:
    script = (
        "import os, sys\n"
        "from experiments.core import stderr_filter\n"
        "stderr_filter.filter_stderr()\n"
        f"lines = {BENIGN + [REAL]!r}\n"
        "os.write(2, ('\\n'.join(lines) + '\\n').encode())\n"
        "print('traceback-like line', file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert done.returncode == 0, done.stderr
    kept = [line for line in done.stderr.splitlines() if line.strip()]
    assert REAL in kept and "traceback-like line" in kept
    assert not any(b in line for b in BENIGN for line in kept)

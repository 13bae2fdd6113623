"""The other TFF-running binaries leave no worker behind on Ctrl-C, SIGTERM or SIGKILL.

`experiments/runtime_test.py` covers every exit path of `experiments.train`
(and `sweep_interrupt_test.py` a sweep's). Here the memorisation audit, which
trains two experiments in one process, is interrupted mid-training: it must
exit 130 (Ctrl-C) or 143 (SIGTERM) without a traceback, with its TFF worker
gone and the rounds written so far intact for a rerun. The benchmark is
stopped the same ways and by SIGKILL, and must leave no worker and no
results file behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from experiments.core.paths import REPO_ROOT
from experiments.core.tff_worker_test import _wait_worker_gone, _worker_children


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # background shells start us ignoring it


def _interrupt(module: str, flags: list[str], tmp_path, signum: int, code: int,
               ready) -> None:
    """Runs `python -m module flags`, sends `signum` once `ready()` holds and a worker
    runs, and checks the exit code, that no traceback was printed and the worker is gone."""
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "HOME": str(tmp_path),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *flags], cwd=REPO_ROOT, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_sigint)
    deadline = time.monotonic() + 300
    try:
        while not (ready() and (workers := _worker_children(proc.pid))):
            assert proc.poll() is None and time.monotonic() < deadline, proc.poll()
            time.sleep(0.05)
        assert len(workers) == 1, workers
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = f"exit {proc.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert proc.returncode == code, report
    assert "Traceback" not in stderr, report
    assert _wait_worker_gone(workers[0]), f"the TFF worker of {module} survived"


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl_c", "sigterm"])
def test_audit_interrupted_mid_training(tmp_path, emnist_dir, signum, code):
    root = tmp_path / "out"
    metrics = root / "audit_nodp" / "metrics.csv"
    _interrupt("experiments.audit", [
        f"--data_dir={emnist_dir}", "--model=logistic", "--clients_per_round=2",
        "--total_rounds=100000", "--canaries=1", "--canary_repeats=2",
        "--rounds_per_eval=1000", f"--root_output_dir={root}", "--noprogress"],
        tmp_path, signum, code,
        ready=lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 3)
    rounds = [int(line.split(",")[0]) for line in metrics.read_text().splitlines()[1:]]
    assert rounds == list(range(1, len(rounds) + 1))


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                         (signal.SIGKILL, -signal.SIGKILL)],
                         ids=["ctrl_c", "sigterm", "sigkill"])
def test_bench_interrupted_mid_run(tmp_path, emnist_dir, signum, code):
    # A benchmark's long memory run is stopped while its worker trains; SIGKILL of the
    # benchmark itself (no handler can run) must still take the worker down.
    started = time.monotonic()
    _interrupt("experiments.bench", [
        f"--data_dir={emnist_dir}", "--cohorts=2", "--warmup_rounds=0", "--rounds=1",
        "--memory_round_a=1", "--memory_round_b=100000", "--memory_dp_cohort=2",
        f"--output={tmp_path / 'bench.json'}"],
        tmp_path, signum, code,
        ready=lambda: time.monotonic() > started + 8)  # into the rounds
    assert not (tmp_path / "bench.json").exists(), "an interrupted benchmark wrote results"

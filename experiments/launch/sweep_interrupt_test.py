"""Ctrl-C on a running sweep, as a terminal delivers it, then the same command again.

The terminal sends SIGINT to the whole foreground process group: the sweep
and its trials. The sweep must stop every trial (no `experiments.train` or
TFF worker left), record the trial as interrupted, exit 130, and on the
rerun resume the trial from its checkpoint to exactly the rounds it would
have written uninterrupted: none missing, none repeated.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import yaml

from experiments.core.paths import REPO_ROOT
from experiments.launch import runner

TOTAL = 30
TRIAL = "client_learning_rate=0.1"


def _env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k != "TFF_DATA_DIR" and not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=REPO_ROOT, HOME=home, PYTHONUNBUFFERED="1")
    return env


def _with_default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # background shells start us ignoring it


def _rounds(metrics: str) -> list[int]:
    with open(metrics, newline="") as f:
        return [int(row["round"]) for row in csv.DictReader(f)]


def _ours_running(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except (OSError, ValueError):
            continue
    return found


def test_ctrl_c_stops_the_trials_and_the_rerun_resumes(tmp_path, emnist_dir):
    home = tmp_path / "home"
    home.mkdir()
    spec = tmp_path / "ctrl_c.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "ctrl_c",
        "base": {"data_dir": emnist_dir, "model": "logistic", "total_rounds": TOTAL,
                 "clients_per_round": 2, "rounds_per_eval": 5, "rounds_per_checkpoint": 1},
        "grid": {"client_learning_rate": [0.1]}}, sort_keys=False))
    root = tmp_path / "out"
    command = [sys.executable, "-m", "experiments.sweep", str(spec),
               f"--root_output_dir={root}", "--max_parallel=1"]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=_env(str(home)), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_with_default_sigint)
    metrics = root / "ctrl_c" / TRIAL / "metrics.csv"
    deadline = time.monotonic() + 300
    try:
        while not (metrics.exists() and len(_rounds(str(metrics))) >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, proc.poll()
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C on a terminal does
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    report = f"exit {proc.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert proc.returncode == 130, report
    assert "Traceback" not in stderr, report
    with open(root / "ctrl_c" / runner.STATUS_FILE) as f:
        assert json.load(f)["trials"][TRIAL]["status"] == "interrupted"
    time.sleep(1)
    assert not _ours_running(str(root)), "a trial or worker outlived the sweep"
    interrupted_at = len(_rounds(str(metrics)))
    assert interrupted_at < TOTAL, "the trial finished before Ctrl-C arrived"

    rerun = subprocess.run(command, cwd=REPO_ROOT, env=_env(str(home)), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, f"{rerun.stdout}\n{rerun.stderr}"
    assert _rounds(str(metrics)) == list(range(1, TOTAL + 1))
    assert (root / "ctrl_c" / TRIAL / "summary.json").exists()
    assert not _ours_running(str(root))

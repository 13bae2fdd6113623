"""The bench's side of the Flower comparison: data hand-off, subprocess, clean-up.

`experiments.bench --flower` trains the same model on the same clients
under Flower's simulation engine (`experiments/benchmark/flower_peer.py`, run with the
Python of `.venv-flower`, which `./run.sh setup_flower` installs from
requirements-flower.txt). This module writes the peer's .npz (model JSON,
initial weights, each round's client examples as our trainer samples them),
runs the peer in its own session with a time limit, and afterwards kills
whatever it left behind: its process group, and every process that carries
the run's marker in its environment (Ray's raylet, GCS and worker processes
inherit it), so no Ray or Flower process outlives the benchmark.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import numpy as np

from experiments.core.errors import UsageError
from experiments.core.paths import REPO_ROOT
from experiments.simulation import sampling

PEER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flower_peer.py")
DEFAULT_PYTHON = os.path.join(REPO_ROOT, ".venv-flower", "bin", "python")
MARKER_VARIABLE = "BENCH_FLOWER_RUN"


def check_python(python: str) -> str:
    """The Flower venv's Python, or a UsageError saying how to install it."""
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise UsageError(
            f"--flower_python={python} does not exist; install Flower's venv with "
            f"'./run.sh setup_flower' (requirements-flower.txt) or drop --flower")
    return python


def round_clients(config: Any, population: int, rounds: int) -> list[np.ndarray]:
    """The client indices of rounds 1..rounds, as FederatedTrainer samples them."""
    return [sampling.select_clients(config.client_sampling, population,
                                    config.clients_per_round, config.seed, r)
            for r in range(1, rounds + 1)]


def write_peer_data(path: str, task: Any, config: Any, rounds: int, warmup: int) -> None:
    """Writes the peer's .npz: model, initial weights, the rounds' client examples."""
    ids = task.train_data.client_ids
    chosen = round_clients(config, len(ids), rounds)
    cap = config.max_elements_per_client or None
    xs, ys = [], []
    starts = np.zeros((rounds, config.clients_per_round), dtype=np.int64)
    sizes = np.zeros_like(starts)
    offset = 0
    for r, clients in enumerate(chosen):
        for slot, index in enumerate(clients):
            x, y = task.train_data.arrays(ids[index])
            x, y = x[:cap], y[:cap]
            starts[r, slot], sizes[r, slot] = offset, len(y)
            offset += len(y)
            xs.append(x)
            ys.append(y)
    model = task.build_model(config.seed)
    weights = {f"weight_{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(path, model_json=np.array(model.to_json()), x=np.concatenate(xs),
             y=np.concatenate(ys), starts=starts, sizes=sizes,
             learning_rate=np.float64(config.client_learning_rate),
             batch_size=np.int64(config.client_batch_size),
             epochs=np.int64(config.client_epochs_per_round),
             warmup_rounds=np.int64(warmup), **weights)


def _marked_pids(marker: str) -> list[int]:
    """Pids of live processes whose environment holds MARKER_VARIABLE=marker."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def kill_leftovers(group: int, marker: str) -> list[int]:
    """SIGKILLs the peer's process group and every marked process; returns the pids hit."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    hit = _marked_pids(marker)
    for pid in hit:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _marked_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return hit


def run_peer(python: str, data_path: str, output_path: str, log_path: str,
             timeout_seconds: float, cpus_per_client: float = 1.0) -> dict:
    """Runs flower_peer.py to the end (or the time limit); returns its JSON plus clean-up."""
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER_VARIABLE: marker, "TF_CPP_MIN_LOG_LEVEL": "2",
           "FLWR_TELEMETRY_ENABLED": "0", "PYTHONPATH": ""}
    command = [python, PEER_SCRIPT, f"--data={data_path}", f"--output={output_path}",
               f"--cpus_per_client={cpus_per_client}"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
                                   start_new_session=True)
        # Its own session keeps a terminal's Ctrl-C off it, so a stop of ours that
        # ends the process from the exit handlers must take it down there too.
        def stop_peer() -> list[int]:
            return kill_leftovers(process.pid, marker)

        atexit.register(stop_peer)
        try:
            code = process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            left = stop_peer()
            atexit.unregister(stop_peer)
            process.wait()
    if code != 0:
        with open(log_path) as f:
            tail = f.read()[-2000:]
        reason = "timed out" if code is None else f"exited with code {code}"
        print(f"bench: Flower peer {reason}; its log ({log_path}) ends:\n{tail}",
              file=sys.stderr)
        return {"error": f"flower_peer {reason}", "log": log_path,
                "leftover_pids_killed": left}
    with open(output_path) as f:
        result = json.load(f)
    result["leftover_pids_killed"] = left
    result["leftover_processes_after_cleanup"] = len(_marked_pids(marker))
    return result

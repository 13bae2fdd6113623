"""The Flower comparison's plumbing: the data hand-off, the clean-up, the flag errors.

No timing is checked. The peer itself (Ray start-up takes minutes) runs only
in the slow test, and only where `.venv-flower` is installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from experiments.benchmark import flower
from experiments.core.paths import REPO_ROOT


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_kill_leftovers_reaches_processes_that_left_the_group() -> None:
    marker = uuid.uuid4().hex
    env = {**os.environ, flower.MARKER_VARIABLE: marker}
    # A child in the group, and one that escaped it with setsid (as a daemon would).
    script = "sleep 300 & setsid sleep 300 & echo $! ; wait"
    parent = subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    escaped = int(parent.stdout.readline())
    deadline = time.monotonic() + 10
    while len(flower._marked_pids(marker)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    marked = flower._marked_pids(marker)
    assert escaped in marked and parent.pid in marked and len(marked) == 3

    flower.kill_leftovers(parent.pid, marker)
    parent.wait(timeout=10)
    assert parent.returncode == -signal.SIGKILL
    assert not _alive(escaped)
    assert flower._marked_pids(marker) == []


def test_peer_data_is_the_trainers_rounds_and_model(emnist_dir: str, tmp_path) -> None:
    """Per round the .npz holds the examples FederatedTrainer trains on, and the
    model JSON + weights compute what the task's model computes."""
    import tensorflow as tf

    from experiments.benchmark.configs import experiment_config
    from experiments.core import tff_worker
    from experiments.training.federated_trainer import FederatedTrainer
    from tasks import registry

    config = experiment_config(emnist_dir, clients_per_round=3)
    task = registry.get(config.task, config.task_config())
    path = str(tmp_path / "peer.npz")
    flower.write_peer_data(path, task, config, rounds=2, warmup=1)
    data = dict(np.load(path))

    with tff_worker.session():
        trainer = FederatedTrainer(config, task)
        state = trainer.initial_state()
        initial = trainer.model_weights(state)
        examples = []
        for round_num in (1, 2):
            state, row = trainer.run_round(state, round_num)
            examples.append(row["train_examples"])
    assert data["sizes"].shape == (2, 3)
    assert data["sizes"].sum(axis=1).tolist() == examples
    starts, sizes = data["starts"].ravel(), data["sizes"].ravel()
    assert np.array_equal(starts[1:], np.cumsum(sizes)[:-1]) and starts[0] == 0
    assert len(data["x"]) == len(data["y"]) == sizes.sum()
    assert int(data["warmup_rounds"]) == 1 and int(data["batch_size"]) == 20
    # Every slot's examples are one whole client of the training split.
    pooled = {(x.tobytes(), y.tobytes()) for x, y in (
        task.train_data.arrays(c) for c in task.train_data.client_ids)}
    for start, size in zip(starts, sizes, strict=True):
        key = (data["x"][start:start + size].tobytes(), data["y"][start:start + size].tobytes())
        assert key in pooled

    weights = [data[f"weight_{i}"] for i in range(len(initial))]
    for ours, theirs in zip(initial, weights, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    rebuilt = tf.keras.models.model_from_json(str(data["model_json"]))
    rebuilt.set_weights(weights)
    reference = task.build_model(config.seed)
    batch = data["x"][:5]
    np.testing.assert_allclose(rebuilt(batch, training=False).numpy(),
                               reference(batch, training=False).numpy(), rtol=1e-5, atol=1e-6)


def test_bench_flower_without_its_venv_is_a_one_line_usage_error(tmp_path) -> None:
    missing = tmp_path / "no-venv" / "python"
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "experiments.bench", "--flower",
         f"--flower_python={missing}", f"--output={tmp_path / 'b.json'}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("bench: error: --flower_python=")
    assert "./run.sh setup_flower" in lines[-1] and "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(flower.DEFAULT_PYTHON),
                    reason="Flower's venv is not installed (./run.sh setup_flower)")
def test_flower_peer_trains_every_round_and_leaves_nothing(emnist_dir: str, tmp_path) -> None:
    from experiments.benchmark.configs import experiment_config
    from tasks import registry

    config = experiment_config(emnist_dir, clients_per_round=2)
    task = registry.get(config.task, config.task_config())
    data = str(tmp_path / "peer.npz")
    flower.write_peer_data(data, task, config, rounds=2, warmup=1)
    result = flower.run_peer(flower.DEFAULT_PYTHON, data,
                                   str(tmp_path / "flower.json"), str(tmp_path / "log"),
                                   timeout_seconds=1200)
    assert "error" not in result, open(tmp_path / "log").read()[-3000:]
    sizes = np.load(data)["sizes"]
    assert result["round_examples"] == sizes.sum(axis=1).tolist()
    assert len(result["round_seconds"]) == 2 and result["failures"] == 0
    # One model per Ray actor, built in the first round only (the cache works).
    assert result["model_builds"][1] == 0
    assert result["leftover_processes_after_cleanup"] == 0
    json.dumps(result)

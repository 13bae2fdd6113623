"""A real tiny sweep for the analysis tests: trained by experiments.sweep on fixture data."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from experiments.core.paths import REPO_ROOT


@pytest.fixture(scope="session")
def tiny_dp_sweep(tmp_path_factory, emnist_dir) -> str:
    """DP-FedAvg, noise {0.5, 1} x cohort {2, 3}, 3 rounds, logistic model: its folder."""
    folder = tmp_path_factory.mktemp("tiny_dp_sweep")
    spec = {"name": "tiny_dp",
            "base": {"data_dir": emnist_dir, "model": "logistic", "total_rounds": 3,
                     "rounds_per_eval": 1, "algorithm": "fedavg_unweighted", "dp": "fixed",
                     "clip": 0.5},
            "grid": {"noise_multiplier": [0.5, 1.0], "clients_per_round": [2, 3]}}
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if k != "TFF_DATA_DIR"}
    env.update(PYTHONPATH=REPO_ROOT, HOME=str(folder))
    run = subprocess.run([sys.executable, "-m", "experiments.sweep", str(folder / "spec.yaml"),
                          f"--root_output_dir={folder}", "--max_parallel=2"],
                         cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    return str(folder / "tiny_dp")

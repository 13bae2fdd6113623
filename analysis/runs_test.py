"""The loaders read what training writes, and seed aggregation is exact."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import runs
from experiments import config as config_lib
from experiments import loop, results


def _fake_experiment(root: str, name: str, seed: int, accuracy: float, z: float) -> str:
    config = config_lib.ExperimentConfig(seed=seed, noise_multiplier=z,
                                         experiment_name=name).as_dict()
    experiment = results.Experiment.open(root, name, config, loop.COLUMNS)
    for r in (1, 2):
        row = {"round": r, "train_loss": 1.0, "train_accuracy": 0.5, "train_examples": 10,
               "clients": 5, "bytes_down_per_client": 8, "bytes_up_per_client": 4,
               "round_seconds": 2.0, "epsilon_rdp": 0.5 * r}
        if r == 2:
            row.update(test_accuracy=accuracy, test_loss=0.3, naive_accuracy=0.1,
                       eval_seconds=1.0)
        experiment.append(row)
    experiment.write_summary({"round": 2.0})
    return experiment.path


def test_load_run_and_sweep_read_what_training_wrote(tmp_path):
    root = str(tmp_path)
    path = _fake_experiment(root, "a", 0, 0.8, 0.0)
    _fake_experiment(root, "b", 1, 0.6, 0.0)
    run = runs.load_run(path)
    assert list(run["round"]) == [1, 2]
    sweep = runs.load_sweep(root)
    assert sorted(sweep["experiment"]) == ["a", "b"]
    a = sweep.set_index("experiment").loc["a"]
    assert a["test_accuracy"] == 0.8 and a["epsilon_rdp"] == 1.0
    assert a["upload_bytes_total"] == 2 * 5 * 4 and a["wall_seconds"] == 5.0
    assert bool(a["complete"]) and a["rounds"] == 2 and a["hp_seed"] == 0


def test_aggregate_seeds_mean_std_interval(tmp_path):
    root = str(tmp_path)
    for seed, acc in enumerate((0.5, 0.7, 0.9)):
        _fake_experiment(root, f"z0_s{seed}", seed, acc, 0.0)
    _fake_experiment(root, "z1_s0", 0, 0.1, 1.0)
    table = runs.aggregate_seeds(runs.load_sweep(root))
    row = table[table["hp_noise_multiplier"] == 0.0].iloc[0]
    values = np.array([0.5, 0.7, 0.9])
    assert row["seeds"] == 3
    assert row["test_accuracy_mean"] == pytest.approx(values.mean())
    assert row["test_accuracy_std"] == pytest.approx(values.std(ddof=1))
    half = 1.96 * values.std(ddof=1) / np.sqrt(3)
    assert row["ci95_low"] == pytest.approx(values.mean() - half)
    assert len(table) == 2

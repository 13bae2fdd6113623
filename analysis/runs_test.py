"""The loaders read what training writes, and seed aggregation is exact."""

from __future__ import annotations

import os

import numpy as np
import pytest

from analysis import runs
from experiments import config as config_lib
from experiments.core import results
from experiments.training import loop


def _fake_experiment(root: str, name: str, seed: int, accuracy: float, z: float) -> str:
    config = config_lib.ExperimentConfig(seed=seed, noise_multiplier=z,
                                         experiment_name=name).as_dict()
    experiment = results.Experiment.open(root, name, config, loop.columns())
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


def test_aggregate_seeds_mean_std_t_interval(tmp_path):
    root = str(tmp_path)
    for seed, acc in enumerate((0.5, 0.7, 0.9)):
        _fake_experiment(root, f"z0_s{seed}", seed, acc, 0.0)
    _fake_experiment(root, "z1_s0", 0, 0.1, 1.0)
    table = runs.aggregate_seeds(runs.load_sweep(root), ["test_accuracy", "epsilon_rdp"])
    row = table[table["hp_noise_multiplier"] == 0.0].iloc[0]
    values = np.array([0.5, 0.7, 0.9])
    assert row["seeds"] == 3
    assert row["test_accuracy_mean"] == pytest.approx(values.mean())
    assert row["test_accuracy_std"] == pytest.approx(values.std(ddof=1))
    half = 4.302652729911275 * values.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 dof)
    assert row["test_accuracy_ci95_low"] == pytest.approx(values.mean() - half)
    assert row["test_accuracy_ci95_high"] == pytest.approx(values.mean() + half)
    assert row["epsilon_rdp_mean"] == pytest.approx(1.0)
    single = table[table["hp_noise_multiplier"] == 1.0].iloc[0]
    assert single["seeds"] == 1 and np.isnan(single["test_accuracy_ci95_low"])
    assert len(table) == 2


def test_row_has_data_fractions_upload_bits_and_best(tmp_path):
    root = str(tmp_path)
    path = _fake_experiment(root, "a", 0, 0.8, 0.0)
    row = runs.load_sweep(root).iloc[0]
    assert row["upload_bits_per_client"] == 32.0  # 8 x 4 bytes (no exact bits column)
    assert row["upload_bits_total"] == 2 * 5 * 32.0
    assert row["best_test_accuracy"] == 0.8 and row["best_test_loss"] == 0.3
    assert row["examples_per_round"] == 10.0
    assert np.isnan(row["population"])  # the fake wrote no data description
    assert runs.load_run(path)["test_accuracy"].dropna().tolist() == [0.8]


def test_seed_curves_band_per_round(tmp_path):
    root = str(tmp_path)
    for seed, acc in enumerate((0.5, 0.7, 0.9)):
        _fake_experiment(root, f"z0_s{seed}", seed, acc, 0.0)
    _fake_experiment(root, "z1_s0", 0, 0.1, 1.0)
    sweep = runs.load_sweep(root)
    assert runs.varied_keys(sweep) == ["hp_noise_multiplier"]
    curves = runs.seed_curves(sweep, "test_accuracy")
    row = curves[curves["hp_noise_multiplier"] == 0.0].iloc[0]
    assert row["round"] == 2 and row["seeds"] == 3
    assert row["mean"] == pytest.approx(0.7) and row["std"] == pytest.approx(0.2)
    assert len(curves) == 2


def test_lower_is_better():
    assert runs.lower_is_better("test_rmse") and runs.lower_is_better("test_loss")
    assert not runs.lower_is_better("test_accuracy")


def test_wall_seconds_are_the_sessions_when_recorded(tmp_path):
    path = _fake_experiment(str(tmp_path), "a", 0, 0.8, 0.0)
    hparams = results.load_hparams(path)
    hparams["sessions"] = [{"started": "t0", "seconds": 30.0}, {"started": "t1",
                                                                "seconds": 12.5}]
    results.write_json(os.path.join(path, results.HPARAMS), hparams)
    assert runs.load_sweep(str(tmp_path))["wall_seconds"].tolist() == [42.5]

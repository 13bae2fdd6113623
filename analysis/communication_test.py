"""Cumulative upload and upload-to-target, from a metrics.csv written as training writes it."""

from __future__ import annotations

import math

import pytest

from analysis import communication
from experiments import config as config_lib
from experiments.core import results
from experiments.training import loop

# (round, clients, bits up per client, test accuracy or None)
ROUNDS = [(1, 10, 100, None), (2, 8, 100, 0.40), (3, 10, 50, None), (4, 10, 50, 0.62),
          (5, 9, 50, 0.61)]


def _experiment(root: str, name: str, rounds=ROUNDS) -> str:
    config = config_lib.ExperimentConfig(experiment_name=name).as_dict()
    experiment = results.Experiment.open(root, name, config, loop.columns())
    for r, clients, bits, accuracy in rounds:
        row = {"round": r, "train_loss": 1.0, "train_examples": 10, "clients": clients,
               "bytes_down_per_client": 80, "bytes_up_per_client": bits / 8,
               "bits_down_per_client": 640, "bits_up_per_client": bits,
               "compression_factor": 3200 / bits, "round_seconds": 1.0}
        if accuracy is not None:
            row.update(test_accuracy=accuracy, test_loss=0.3, eval_seconds=1.0)
        experiment.append(row)
    return experiment.path


def test_cumulative_upload_and_upload_to_reach_a_target(tmp_path) -> None:
    path = _experiment(str(tmp_path), "a")
    metrics = communication.runs.load_run(path)
    expected = [1000, 1800, 2300, 2800, 3250]  # sum of clients x bits, by hand
    assert list(communication.cumulative_upload_bits(metrics)) == expected
    assert communication.upload_to_reach(metrics, 0.4) == 1800
    assert communication.upload_to_reach(metrics, 0.6) == 2800  # first reached in round 4
    assert math.isnan(communication.upload_to_reach(metrics, 0.7))
    assert communication.rounds_to_reach(metrics, 0.6) == 4
    row = communication.run_row(path, target=0.6)
    assert row["final_test_accuracy"] == pytest.approx(0.61)
    assert row["bits_up_to_target"] == 2800 and row["cumulative_bits_up"] == 3250
    assert row["bits_up_per_client"] == pytest.approx(70.0)


def test_best_within_one_point_picks_the_largest_factor(tmp_path) -> None:
    base = _experiment(str(tmp_path), "base")
    close = _experiment(str(tmp_path), "close",
                        [(1, 10, 10, None), (2, 10, 10, 0.605)])  # factor 320, -0.5 point
    far = _experiment(str(tmp_path), "far",
                      [(1, 10, 1, None), (2, 10, 1, 0.5)])  # factor 3200, -11 points
    table = communication.compression_table([base, close, far])
    best = communication.best_within(table, baseline_accuracy=0.61, points=0.01)
    assert best["experiment"] == "close" and best["compression_factor"] == 320
    assert communication.best_within(table, baseline_accuracy=0.9) is None

"""Plots draw exactly the numbers the sweep holds: series checked against numpy / scipy."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy import stats

from analysis import fakes, plots, runs

NOISES = (0.5, 1.0)
COHORTS = (2, 4)
SEEDS = (0, 1, 2)


def _accuracy(z: float, k: int, seed: int, r: int) -> float:
    return 0.1 * r + 0.2 * k / (1 + z) + 0.01 * seed


def _epsilon(z: float, k: int) -> float:
    return 10.0 * k / z


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fake_sweep"))
    for z in NOISES:
        for k in COHORTS:
            for seed in SEEDS:
                fakes.experiment(root, f"z={z},k={k},seed={seed}",
                                 {"noise_multiplier": z, "clients_per_round": k, "seed": seed},
                                 [_accuracy(z, k, seed, r) for r in (1, 2, 3)],
                                 epsilon=_epsilon(z, k), bytes_up=100 * k, clients=k,
                                 examples=10 * k)
    return runs.load_sweep(root)


def _interval(values):
    values = np.asarray(values)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


def _is_png(path: str) -> bool:
    with open(path, "rb") as f:
        return os.path.getsize(path) > 1000 and f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_accuracy_vs_epsilon_one_line_per_cohort(sweep, tmp_path):
    plot = plots.accuracy_vs_epsilon(sweep, str(tmp_path / "eps.png"))
    assert _is_png(plot.path)
    assert sorted(plot.series) == ["clients_per_round=2", "clients_per_round=4"]
    for k in COHORTS:
        line = plot.series[f"clients_per_round={k}"]
        # Sorted by epsilon: the larger noise (smaller epsilon) first.
        assert line["x"].tolist() == pytest.approx([_epsilon(1.0, k), _epsilon(0.5, k)])
        for i, z in enumerate((1.0, 0.5)):
            mean, low, high = _interval([_accuracy(z, k, s, 3) for s in SEEDS])
            assert line["y"][i] == pytest.approx(mean)
            assert (line["low"][i], line["high"][i]) == pytest.approx((low, high))
            assert line["seeds"][i] == 3


def test_epsilon_vs_clients_one_line_per_noise(sweep, tmp_path):
    plot = plots.epsilon_vs_clients(sweep, str(tmp_path / "epsk.png"))
    assert _is_png(plot.path)
    for z in NOISES:
        line = plot.series[f"noise_multiplier={z:g}"]
        assert line["x"].tolist() == [2.0, 4.0]
        assert line["y"].tolist() == pytest.approx([_epsilon(z, 2), _epsilon(z, 4)])


def test_accuracy_vs_clients_examples_and_upload(sweep, tmp_path):
    by_k = plots.accuracy_vs_clients(sweep, str(tmp_path / "k.png"))
    by_examples = plots.accuracy_vs_examples(sweep, str(tmp_path / "ex.png"))
    by_upload = plots.accuracy_vs_upload(sweep, str(tmp_path / "up.png"),
                                         along="hp_clients_per_round")
    for plot in (by_k, by_examples, by_upload):
        assert _is_png(plot.path)
    for z in NOISES:
        label = f"noise_multiplier={z:g}"
        ys = [np.mean([_accuracy(z, k, s, 3) for s in SEEDS]) for k in COHORTS]
        assert by_k.series[label]["y"].tolist() == pytest.approx(ys)
        # examples per round 10k of 1000 x 100 training examples
        assert by_examples.series[label]["x"].tolist() == pytest.approx(
            [10 * k / 100000 for k in COHORTS])
        assert by_upload.series[label]["x"].tolist() == pytest.approx(
            [8 * 100 * k for k in COHORTS])  # bits = 8 x bytes
        assert by_upload.series[label]["y"].tolist() == pytest.approx(ys)


def test_learning_curves_band_over_seeds(sweep, tmp_path):
    plot = plots.learning_curves(sweep, str(tmp_path / "curves.png"))
    assert _is_png(plot.path)
    assert len(plot.series) == 4
    line = plot.series["clients_per_round=4, noise_multiplier=0.5"]
    assert line["x"].tolist() == [1.0, 2.0, 3.0]
    for i, r in enumerate((1, 2, 3)):
        mean, low, high = _interval([_accuracy(0.5, 4, s, r) for s in SEEDS])
        assert (line["y"][i], line["low"][i], line["high"][i]) == pytest.approx(
            (mean, low, high))


def test_noiseless_runs_stand_at_the_epsilon_axis_edge(tmp_path):
    root = str(tmp_path)
    fakes.experiment(root, "z0", {"noise_multiplier": 0.0}, [0.5], epsilon=float("inf"))
    fakes.experiment(root, "z1", {"noise_multiplier": 1.0}, [0.3], epsilon=2.0)
    fakes.experiment(root, "none", {"noise_multiplier": 0.5}, [0.4])  # no epsilon written
    plot = plots.accuracy_vs_epsilon(runs.load_sweep(root), str(tmp_path / "e.png"),
                                     references={"naive baseline": 0.05})
    # Never dropped: drawn at 4x the largest finite epsilon, past every DP point.
    assert {k: v["x"].tolist() for k, v in plot.series.items()} == {"all": [2.0, 8.0, 8.0]}
    assert sorted(plot.series["all"]["y"].tolist()) == [0.3, 0.4, 0.5]

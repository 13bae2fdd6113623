"""`./run.sh report`: on a real (tiny) sweep, numbers match what training wrote."""

from __future__ import annotations

import csv
import math
import os

import pytest

from analysis import report, runs
from experiments.errors import UsageError


def _final(path: str, column: str) -> float:
    """The last non-empty value of a metrics.csv column, read with the csv module."""
    with open(os.path.join(path, "metrics.csv")) as f:
        values = [row[column] for row in csv.DictReader(f) if row[column] != ""]
    return float(values[-1])


def test_loader_reads_what_training_wrote(tiny_dp_sweep):
    sweep = runs.load_sweep(tiny_dp_sweep)
    assert len(sweep) == 4 and sweep["complete"].all()
    assert runs.varied_keys(sweep) == ["hp_clients_per_round", "hp_noise_multiplier"]
    for _, row in sweep.iterrows():
        assert row["test_accuracy"] == pytest.approx(_final(row["path"], "test_accuracy"))
        assert row["epsilon_rdp"] == pytest.approx(_final(row["path"], "epsilon_rdp"))
        assert row["population"] == 6 and row["rounds"] == 3
        assert row["population_fraction"] == pytest.approx(row["hp_clients_per_round"] / 6)
    # More noise, same cohort: less privacy loss.
    eps = sweep.set_index(["hp_clients_per_round", "hp_noise_multiplier"])["epsilon_rdp"]
    assert eps[(2, 1.0)] < eps[(2, 0.5)] and eps[(3, 1.0)] < eps[(3, 0.5)]


def test_report_writes_table_and_plots(tiny_dp_sweep):
    result = report.write(tiny_dp_sweep)
    with open(result.path) as f:
        text = f.read()
    assert len(result.table) == 4
    names = sorted(os.path.basename(p.path) for p in result.plots)
    assert names == sorted(["accuracy_vs_epsilon.png", "accuracy_vs_clients.png",
                            "epsilon_vs_clients.png", "accuracy_vs_examples.png",
                            "learning_curves.png"])
    for plot in result.plots:
        assert os.path.getsize(plot.path) > 1000
        assert f"]({os.path.relpath(plot.path, tiny_dp_sweep)})" in text
    sweep = runs.load_sweep(tiny_dp_sweep)
    for _, row in sweep.iterrows():  # one seed: the cell is the run's own final accuracy
        line = next(line for line in text.splitlines()
                    if line.startswith(f"| {row['hp_clients_per_round']} | "
                                       f"{row['hp_noise_multiplier']:g} |"))
        assert f"| {row['test_accuracy']:.3f} |" in line, line
    eps_plot = next(p for p in result.plots if p.path.endswith("accuracy_vs_epsilon.png"))
    line = eps_plot.series["clients_per_round=2"]
    mine = sweep[sweep["hp_clients_per_round"] == 2].sort_values("epsilon_rdp")
    assert line["x"].tolist() == pytest.approx(mine["epsilon_rdp"].tolist())
    assert line["y"].tolist() == pytest.approx(mine["test_accuracy"].tolist())
    assert all(math.isnan(v) for v in line["low"])  # one seed: no interval


def test_report_errors_are_one_line(tmp_path, tiny_dp_sweep):
    with pytest.raises(UsageError, match="no such folder"):
        report.write(str(tmp_path / "missing"))
    with pytest.raises(UsageError, match="holds no experiment folders"):
        report.write(str(tmp_path))
    with pytest.raises(UsageError, match="--metric=test_rmse: not written by these runs"):
        report.write(tiny_dp_sweep, "test_rmse")

"""The analysis notebooks run headless (nbclient) against a real tiny sweep."""

from __future__ import annotations

import os

import pytest

from analysis import notebook_runner

NOTEBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notebooks")


def _outputs(notebook) -> str:
    texts = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            texts.append(out.get("text", "") + str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


@pytest.mark.parametrize("name, pngs", [
    ("tradeoffs.ipynb", ("accuracy_vs_epsilon.png", "epsilon_vs_clients.png",
                         "accuracy_vs_clients.png")),
    ("learning_curves.ipynb", ("learning_curves.png", "train_loss.png")),
])
def test_notebook_executes(tiny_dp_sweep, tmp_path, name, pngs):
    output = str(tmp_path / name)
    notebook = notebook_runner.execute(os.path.join(NOTEBOOKS, name),
                                       {"SWEEP_DIR": tiny_dp_sweep, "METRIC": ""}, output)
    text = _outputs(notebook)
    assert f"4 complete runs in {tiny_dp_sweep}; metric test_accuracy" in text
    assert os.path.exists(output)
    for png in pngs:
        assert os.path.getsize(os.path.join(tiny_dp_sweep, "notebook", "plots", png)) > 1000
    images = sum("image/png" in out.get("data", {})
                 for cell in notebook.cells for out in cell.get("outputs", []))
    assert images >= len(pngs)


def test_parameter_cell_is_replaced():
    assert notebook_runner.parameter_source({"SWEEP_DIR": "/x", "METRIC": ""}) == (
        "SWEEP_DIR = '/x'\nMETRIC = ''")

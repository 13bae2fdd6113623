"""The analysis notebooks run headless (nbclient) against a real tiny sweep."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from analysis import notebook_runner
from experiments.core.paths import REPO_ROOT

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


def _command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.notebook_runner", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": REPO_ROOT})


def test_bad_input_is_one_plain_line_and_makes_nothing(tmp_path, tiny_dp_sweep):
    missing = tmp_path / "missing"
    done = _command("tradeoffs", f"--sweep_dir={missing}")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"notebook: error: {missing}: no such folder; give a sweep's "
                           f"output folder (<root_output_dir>/<sweep name>)\n")
    assert not missing.exists()
    done = _command("nosuch", f"--sweep_dir={tiny_dp_sweep}")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "one of learning_curves, tradeoffs" in done.stderr


def test_a_failing_cell_is_one_line_without_colour_codes(tmp_path, tiny_dp_sweep):
    import nbformat

    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell("SWEEP_DIR = ''", metadata={
        "tags": ["parameters"]}), nbformat.v4.new_code_cell("1 / 0")]
    path = tmp_path / "broken.ipynb"
    nbformat.write(book, str(path))
    done = _command(str(path), f"--sweep_dir={tiny_dp_sweep}",
                    f"--output_notebook={tmp_path / 'out.ipynb'}")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "a cell failed: ZeroDivisionError: division by zero" in done.stderr
    assert "\x1b[" not in done.stderr

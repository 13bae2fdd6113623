"""Executes an analysis notebook headless with parameters (nbclient + ipykernel).

    ./run.sh notebook tradeoffs --sweep_dir=results/femnist_dp \
        [--output_notebook=/tmp/tradeoffs.out.ipynb]

The notebook is a name from analysis/notebooks/ (tradeoffs, learning_curves) or
a path; the sweep folder is checked before anything runs or is written.
The cell tagged `parameters` is replaced by one assigning the given values (the
papermill convention, without papermill), the notebook runs top to bottom in a
fresh kernel started from the checkout, and the executed copy is written to
--output_notebook (default: beside the sweep, `<sweep_dir>/notebook/<name>`). A failing
cell ends with a one-line error naming the notebook and the cell's error.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from absl import flags

from analysis import report
from experiments.core import binary, stops
from experiments.core.errors import UsageError
from experiments.core.paths import REPO_ROOT

TIMEOUT_SECONDS = 600
NOTEBOOKS = os.path.join(REPO_ROOT, "analysis", "notebooks")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # IPython colours its tracebacks

_FLAGS = flags.FLAGS
if "sweep_dir" not in _FLAGS:
    flags.DEFINE_string("sweep_dir", "", "The sweep folder the notebook reads (SWEEP_DIR).")
if "metric" not in _FLAGS:  # analysis.report defines the same flag (both in one test process)
    flags.DEFINE_string("metric", "", "Metric column (METRIC; default: the task's primary).")
flags.DEFINE_string("output_notebook", "", "Where the executed notebook goes.")


def parameter_source(parameters: dict[str, Any]) -> str:
    """The code of a parameters cell assigning `parameters` (repr of each value)."""
    return "\n".join(f"{name} = {value!r}" for name, value in parameters.items())


def execute(path: str, parameters: dict[str, Any], output: str = "") -> Any:
    """Runs the notebook with `parameters`; the executed NotebookNode (also written)."""
    # Here: Jupyter's packages load only when a notebook is run.
    import nbclient
    import nbformat

    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such notebook")
    notebook = nbformat.read(path, as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    if not tagged:
        raise UsageError(f"{path}: has no cell tagged 'parameters'")
    tagged[0].source = "# Parameters (injected)\n" + parameter_source(parameters)
    env_path = os.environ.get("PYTHONPATH", "")
    if REPO_ROOT not in env_path.split(os.pathsep):
        os.environ["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env_path if env_path else "")
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT_SECONDS,
                                     kernel_name="python3",
                                     resources={"metadata": {"path": REPO_ROOT}})
    client.log.setLevel(logging.WARNING)  # its "Executing notebook" INFO line is noise
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        lines = [_ANSI.sub("", line) for line in str(e).splitlines() if line.strip()]
        raise UsageError(f"{path}: a cell failed: {lines[-1] if lines else e}") from None
    finally:
        if output:
            os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
            nbformat.write(notebook, output)
    return notebook


_USAGE = "give one notebook and --sweep_dir=DIR: ./run.sh notebook NAME --sweep_dir=DIR"


def notebook_path(name: str) -> str:
    """A notebook path, or the notebook of that name in analysis/notebooks/."""
    if os.path.isfile(name):
        return name
    named = os.path.join(NOTEBOOKS, f"{name.removesuffix('.ipynb')}.ipynb")
    if os.path.isfile(named):
        return named
    valid = sorted(n.removesuffix(".ipynb") for n in os.listdir(NOTEBOOKS)
                   if n.endswith(".ipynb"))
    raise UsageError(f"{name}: no such notebook; give a path or one of {', '.join(valid)}")


def _run(args: list[str]) -> None:
    if not _FLAGS.sweep_dir:
        raise UsageError(_USAGE)
    path = notebook_path(args[0])
    report.load(_FLAGS.sweep_dir)  # a missing or empty sweep folder: one line, nothing made
    output = _FLAGS.output_notebook or os.path.join(_FLAGS.sweep_dir, "notebook",
                                                    os.path.basename(path))
    execute(path, {"SWEEP_DIR": os.path.abspath(_FLAGS.sweep_dir),
                   "METRIC": _FLAGS.metric}, output)
    print(f"notebook: executed {path} -> {output}")


if __name__ == "__main__":
    binary.run_with_arguments("notebook", _run, _USAGE, 1,
                              interrupted=stops.NOTHING_WRITTEN)

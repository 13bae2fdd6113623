"""Every binary answers --help / --helpshort with its own flags, exit code 0 and nothing
on stderr, before TensorFlow loads (so the answer comes in well under a second)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from experiments.core.paths import REPO_ROOT

ENV = {**os.environ, "PYTHONPATH": REPO_ROOT}
# One flag each binary must list (its own, or the run settings it takes).
BINARIES = {"train": "--noise_multiplier", "audit": "--audit_output",
            "bench": "--output", "privacy_plan": "--population", "sweep": "--max_parallel"}


@pytest.mark.parametrize("binary", sorted(BINARIES))
@pytest.mark.parametrize("flag", ["--help", "--helpshort"])
def test_help_exits_0_with_the_binarys_flags(binary: str, flag: str) -> None:
    done = subprocess.run([sys.executable, "-m", f"experiments.{binary}", flag],
                          cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert BINARIES[binary] in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("module", ["experiments.train", "experiments.audit",
                                    "experiments.bench", "experiments.config"])
def test_binaries_load_tensorflow_only_when_they_run(module: str) -> None:
    script = f"import sys, {module}; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_tensorflow_imported_later_is_still_quiet() -> None:
    script = ("import sys, experiments.config\nimport tensorflow as tf\n"
              "import tensorflow_federated\nprint(tf.constant(2).numpy())")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT,
                          env={k: v for k, v in ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "2", done.stderr
    assert "Unable to register" not in done.stderr and "TensorRT" not in done.stderr


def test_a_binarys_body_builds_keras_models_with_flatten() -> None:
    # TF 2.14 imported inside absl's app.run main breaks Keras: Flatten sees a None
    # shape. binary.run imports it before parsing (but not for --help).
    script = ("from experiments.core import binary\n"
              "def body():\n"
              "    from tasks import emnist_models\n"
              "    print(emnist_models.two_nn(62, 0).count_params())\n"
              "binary.run('t', body)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "209662"



def test_every_test_module_imports_beside_every_other() -> None:
    # pytest imports all test files, and what they import, into one process: a
    # library module that defines an absl flag at import under a name the trainer
    # also defines breaks collection of the whole suite.
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider"], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and " error" not in done.stdout, done.stdout[-2000:]

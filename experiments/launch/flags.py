"""The flags of a sweep's runner, shared by the binaries that run sweeps.

`python -m experiments.sweep` and `python -m analysis.tables --run` both run
trials through `experiments.launch.runner`, with the same output root,
parallelism and launcher settings.
"""

from __future__ import annotations

import os

from absl import flags

_FLAGS = flags.FLAGS


def define() -> None:
    """Defines the runner's flags (idempotent)."""
    if "max_parallel" in _FLAGS:
        return
    # Guarded: experiments.config defines the same --root_output_dir (a string
    # defaulting to "results") when both are imported into one process (tests).
    if "root_output_dir" not in _FLAGS:
        flags.DEFINE_string("root_output_dir", "results",
                            "Root folder; trials go to <root_output_dir>/<sweep name>/.")
    flags.DEFINE_integer("max_parallel", max(1, (os.cpu_count() or 1) // 2),
                         "Trials run at once (default: half the CPUs).", lower_bound=1)
    flags.DEFINE_enum("launcher", "local", ["local", "ray"],
                      "local: trials are subprocesses here; ray: Ray tasks on a cluster.")
    flags.DEFINE_string("ray_address", "",
                        "--launcher=ray: cluster address ('auto', 'HOST:PORT'); empty starts "
                        "a local cluster for this sweep.")
    flags.DEFINE_float("cpus_per_trial", 1.0, "--launcher=ray: CPUs each trial reserves.",
                       lower_bound=0.0)
    flags.DEFINE_float("gpus_per_trial", 0.0, "--launcher=ray: GPUs each trial reserves.",
                       lower_bound=0.0)

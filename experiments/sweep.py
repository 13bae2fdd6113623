"""Runs a grid of experiments from a YAML spec, each trial its own train.py process.

    python -m experiments.sweep configs/sweeps/femnist_dp.yaml \
        [--root_output_dir=results] [--max_parallel=N]

The spec:

    name: femnist_dp             # optional; default: the spec's file name
    base:                        # flags shared by every trial
      flagfile: configs/emnist_fedavg_demo.cfg
      total_rounds: 100
    grid:                        # crossed: every combination
      noise_multiplier: [0.1, 0.5]
    zip:                         # varied together (lists of equal length)
      clients_per_round: [10, 50]
      clip: [0.5, 1.0]
    cases:                       # alternatives, each with its own flags
      - {compression: none}
      - {compression: quantize, quantization_bits: 4}
      - {compression: random_mask, keep_fraction: 0.1}
    random:                      # `count` samples, each drawn for every flag below
      count: 4
      seed: 0                    # seeds the sampler (not training; see seeds:)
      client_learning_rate: {loguniform: [0.001, 1.0]}   # log-uniform in [low, high)
      clip: {uniform: [0.1, 1.0]}                        # uniform in [low, high)
      model: {choice: [2nn, cnn]}                        # one of the values
      client_batch_size: {int: [10, 50]}                 # integer in [low, high]
    seeds: 3                     # repeats (--seed=0,1,2), or a list: [3, 7]

Trials are grid x zip-rows x cases x random samples x seeds, in a fixed order, each
named after its varied values (`noise_multiplier=0.1,clients_per_round=10,clip=0.5,seed=0`)
and written to `<root_output_dir>/<name>/<trial>/` in the one results layout.
Each trial's flags go to `<root>/<name>/.trials/<trial>.cfg`, so
`python -m experiments.train --flagfile=<that file>` reproduces it; its
stdout/stderr go beside it (`.out`, `.err`).

Trials whose folder has summary.json are skipped, so rerunning a sweep resumes
it (an interrupted trial resumes from its checkpoint). A failing trial is
recorded in `<root>/<name>/sweep_status.json` (exit code, last stderr line)
while the others go on. Exit code: 0 if every trial succeeded, 1 if any failed,
2 for a bad spec or a sweep already running in that folder, 130 / 143 after
Ctrl-C / SIGTERM (running trials are stopped and recorded as interrupted).

Random samples come from numpy's PCG64 seeded with `random.seed` (default 0):
sample by sample, flag by flag in spec order, floats rounded to 6 significant
digits (so a trial's name is its exact flag value); the same spec always
expands to the same trials.

`--launcher=ray` runs the same trials as Ray tasks (experiments/launch/ray_launcher.py)
on the cluster at `--ray_address` (default: a local one for this sweep), each
reserving `--cpus_per_trial` / `--gpus_per_trial`; every task still runs
`python -m experiments.train --flagfile=...` and writes the same folders, so
all nodes must see the same filesystem (the checkout and the output root).
"""

from __future__ import annotations

import sys

from absl import flags

from experiments import config as config_lib
from experiments.core import binary
from experiments.launch import flags as launch_flags
from experiments.launch import ray_launcher
from experiments.launch import spec as spec_lib
from experiments.launch.runner import Runner

_FLAGS = flags.FLAGS
launch_flags.define()


def load(path: str) -> spec_lib.Sweep:
    """The sweep spec at `path`, expanded into trials of train.py's flags."""
    return spec_lib.load(path, config_lib.ExperimentConfig)


def _sweep(args: list[str]) -> None:
    """Runs the spec's trials; exits 0 if all succeeded, 1 if any failed."""
    launcher = None
    try:
        sweep = load(args[0])
        if _FLAGS.launcher == "ray":
            launcher = ray_launcher.RayLauncher(_FLAGS.ray_address, _FLAGS.cpus_per_trial,
                                                _FLAGS.gpus_per_trial)
        code = Runner(sweep, _FLAGS.root_output_dir, _FLAGS.max_parallel, args[0],
                      launcher).run()
    finally:
        if launcher is not None:
            launcher.close()
    sys.exit(code)


if __name__ == "__main__":
    binary.run_with_arguments(
        "sweep", _sweep, "give exactly one spec file: python -m experiments.sweep "
        "SPEC.yaml [--root_output_dir=DIR] [--max_parallel=N]", 1)

"""Speed and memory benchmark of the federated stack, in one process.

    python -m experiments.bench                       # the full benchmark (~15-20 min)
    python -m experiments.bench --cohorts=10,20 --rounds=3 \\
        --memory_round_a=5 --memory_round_b=15        # a quick check

Everything is measured in ONE run so that ratios are robust on a noisy
machine (both sides of a ratio see the same load):

1. FedAvg (`cnn_dropout`, EMNIST-62) through the project's own
   `FederatedTrainer`, for each cohort size of `--cohorts`: `--warmup_rounds`
   rounds, then `--rounds` measured rounds (median seconds, examples/s).
2. After each federated round, the compiled centralised reference on exactly
   that round's examples: the same `task.preprocess_train` pipelines of the
   round's clients (same client shuffle seeds), concatenated, and trained by
   one `tf.function` whose loop over the dataset runs inside the graph (same
   model, SGD at the client learning rate, same batch size).
   `ratio_to_centralized` = federated median / centralised median;
   `cpu_ratio_to_centralized` the same in CPU seconds (this process plus
   TFF's worker), which a host that is slow to wake idle vCPUs cannot skew.
   The CPU time the hypervisor stole is reported per cohort and per run.
3. Per-client fixed overhead: least-squares slope of federated round time vs
   cohort size, minus the centralised compute of one mean-sized client.
   The same fixed cost measured with the compute held constant: each round's
   examples as `--memory_dp_cohort` clients and as one client holding them all,
   interleaved (`fixed_overhead_ms_per_client`); that one client against the
   centralised loop (`one_client_over_centralized`) is the speed of the client
   step itself. The same rounds also run through TFF's stock FedAvg (its own
   client work, `builder.build_tff_stock`): `ours_over_tff_stock`.
4. Resident memory (VmRSS of this process plus TFF's worker) at rounds
   `--memory_round_a` and `--memory_round_b` of one long run.
5. DP overhead: rounds of unweighted FedAvg without and with fixed-clip DP
   (noise multiplier 1, clip 1), interleaved; median ratio.

Results go to `--output` (JSON) and the same name with `.md` (a markdown
table, also printed). Data: the real EMNIST file in `--data_dir` (default
$TFF_DATA_DIR, else `.cache/tff_data`, else ~/.tff) when it is there (FEMNIST-300
on our machines), else synthetic clients of the same shape and sizes. Speed
numbers live here only, never in tests. Bad flags end with one line
`bench: error: ...` and exit code 2.

This binary only reads and checks the flags and writes the files; the
measurements are the library package `experiments.benchmark` (`suite.run`
runs them all, `report.markdown` makes the table).
"""

from __future__ import annotations

import json
import os

from absl import flags

from experiments.benchmark import flower, report
from experiments.benchmark.settings import Settings
from experiments.core import binary, results, stops
from experiments.core.errors import UsageError

if "data_dir" not in flags.FLAGS:  # shared with experiments.config when both load
    flags.DEFINE_string(
        "data_dir", "", "Folder with TFF's dataset files (default: $TFF_DATA_DIR, "
        "else .cache/tff_data, else ~/.tff); without emnist_all.sqlite there, "
        "synthetic clients of FEMNIST-300's shape are used.")
flags.DEFINE_list("cohorts", ["10", "50", "100"], "Cohort sizes (clients per round).")
flags.DEFINE_integer("warmup_rounds", 2, "Unmeasured rounds before each measurement.")
flags.DEFINE_integer("rounds", 5, "Measured rounds per cohort size (and per DP arm).")
flags.DEFINE_integer("memory_round_a", 50, "Round of the long run at which RSS is first read.")
flags.DEFINE_integer("memory_round_b", 500,
                     "Round at which RSS is read again (0: skip the memory run).")
flags.DEFINE_integer("memory_dp_cohort", 10,
                     "Cohort size of the memory, DP, compression and client-split runs.")
flags.DEFINE_string("output", "bench.json",
                    "JSON results file; the markdown table goes beside it as .md.")
# --- Flower side by side (experiments/benchmark/flower.py, flower_peer.py) ---
flags.DEFINE_bool("flower", False, "Also run the cohort under Flower's simulation engine "
                  "(Ray backend, Keras clients) and report speedup_vs_flower.")
flags.DEFINE_string("flower_python", "", "Python of Flower's venv (default: "
                    ".venv-flower/bin/python, installed by ./run.sh setup_flower).")
flags.DEFINE_integer("flower_cohort", 10, "Cohort size of the Flower comparison.")
flags.DEFINE_float("flower_cpus_per_client", 1.0,
                   "Ray CPUs per Flower virtual client (1: two at a time on two cores).")
flags.DEFINE_integer("flower_timeout", 3600, "Seconds before the Flower run is stopped.")

# --- Cost against population size (experiments/benchmark/population.py) ---
flags.DEFINE_list("populations", ["300", "30000", "100000"],
                  "Users of the synthetic StackOverflow-layout populations trained from the "
                  "client store (generated once into .cache/populations; empty: skip).")
flags.DEFINE_list("population_cohorts", ["10", "100"], "Cohorts of the population runs.")
flags.DEFINE_integer("population_rounds", 3, "Measured rounds per population run.")
flags.DEFINE_integer("population_memory_max", 30_000,
                     "Largest population also trained from --data_store=memory (its parse "
                     "of every record runs at about 10,000 records/s).")

FLAGS = flags.FLAGS


def _require(ok: bool, message: str) -> None:
    """Raises a UsageError with `message` unless `ok`."""
    if not ok:
        raise UsageError(message)


def _positive_list(name: str, raw: list[str], example: str) -> tuple[int, ...]:
    """A comma-separated flag of positive integers, sorted; raises a UsageError."""
    try:
        values = [int(v) for v in raw]
    except ValueError:
        values = [0]
    _require(all(v >= 1 for v in values),
             f"--{name}={','.join(raw)} must be a comma-separated list of positive "
             f"integers, e.g. --{name}={example}")
    return tuple(sorted(set(values)))


def _population_flags() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """--populations and --population_cohorts, checked against each other."""
    populations = _positive_list("populations", FLAGS.populations, "300,30000,100000")
    cohorts = _positive_list("population_cohorts", FLAGS.population_cohorts, "10,100")
    _require(FLAGS.population_rounds >= 1,
             f"--population_rounds={FLAGS.population_rounds} must be a positive integer")
    _require(not populations or not cohorts or max(cohorts) <= min(populations),
             f"--population_cohorts={','.join(FLAGS.population_cohorts)}: a cohort exceeds "
             f"the smallest population ({min(populations or [0])} users)")
    _require(bool(cohorts) or not populations,
             "--population_cohorts must not be empty while --populations is set")
    return populations, cohorts


def settings_from_flags() -> Settings:
    """The parsed flags, checked; raises a UsageError naming the first bad one."""
    raw = FLAGS.cohorts
    try:
        cohorts = [int(c) for c in raw]
    except ValueError:
        cohorts = []
    _require(bool(cohorts) and all(c >= 1 for c in cohorts),
             f"--cohorts={','.join(raw)} must be a comma-separated list of positive "
             f"integers, e.g. --cohorts=10,50,100")
    _require(FLAGS.warmup_rounds >= 0,
             f"--warmup_rounds={FLAGS.warmup_rounds} must be >= 0")
    _require(FLAGS.rounds >= 1, f"--rounds={FLAGS.rounds} must be a positive integer")
    _require(FLAGS.memory_dp_cohort >= 2,
             f"--memory_dp_cohort={FLAGS.memory_dp_cohort} must be at least 2 (it is "
             "also split into one client to measure the fixed cost per client)")
    _require(FLAGS.memory_round_b >= 0,
             f"--memory_round_b={FLAGS.memory_round_b} must be >= 0 (0 skips the memory run)")
    if FLAGS.memory_round_b:
        _require(FLAGS.memory_round_a >= 1,
                 f"--memory_round_a={FLAGS.memory_round_a} must be a positive integer")
        _require(FLAGS.memory_round_b > FLAGS.memory_round_a,
                 f"--memory_round_b={FLAGS.memory_round_b} must be above "
                 f"--memory_round_a={FLAGS.memory_round_a} (or 0 to skip)")
    output = FLAGS.output
    _require(bool(output) and not output.endswith(os.sep),
             f"--output={output!r} must name a file")
    _require(not output.endswith(".md"),
             f"--output={output} must not end in .md (the markdown table goes beside "
             f"the JSON as .md)")
    folder = os.path.dirname(os.path.abspath(output))
    _require(os.path.isdir(folder) and os.access(folder, os.W_OK),
             f"--output={output}: folder {folder} does not exist or is not writable")
    flower_python = ""
    if FLAGS.flower:
        flower_python = flower.check_python(
            FLAGS.flower_python or flower.DEFAULT_PYTHON)
        _require(FLAGS.flower_cohort >= 1,
                 f"--flower_cohort={FLAGS.flower_cohort} must be a positive integer")
        _require(FLAGS.flower_cpus_per_client > 0,
                 f"--flower_cpus_per_client={FLAGS.flower_cpus_per_client} must be > 0")
        _require(FLAGS.flower_timeout >= 1,
                 f"--flower_timeout={FLAGS.flower_timeout} must be a positive integer")
    populations, population_cohorts = _population_flags()
    return Settings(data_dir=FLAGS.data_dir, cohorts=tuple(sorted(set(cohorts))),
                    warmup_rounds=FLAGS.warmup_rounds, rounds=FLAGS.rounds,
                    memory_round_a=FLAGS.memory_round_a if FLAGS.memory_round_b else 0,
                    memory_round_b=FLAGS.memory_round_b,
                    memory_dp_cohort=FLAGS.memory_dp_cohort, output=output,
                    flower_python=flower_python, flower_cohort=FLAGS.flower_cohort,
                    flower_cpus_per_client=FLAGS.flower_cpus_per_client,
                    flower_timeout=FLAGS.flower_timeout, populations=populations,
                    population_cohorts=population_cohorts,
                    population_rounds=FLAGS.population_rounds,
                    population_memory_max=FLAGS.population_memory_max)


def _bench() -> None:
    """Runs the benchmark; writes the JSON and the markdown table, prints the table."""
    settings = settings_from_flags()
    # Here, not at the top: TensorFlow stays out of the binary's start (--help).
    from experiments.benchmark import suite

    result = suite.run(settings)
    table = report.markdown(result)
    results.atomic_write(settings.output, (json.dumps(result, indent=2) + "\n").encode())
    results.atomic_write(settings.markdown_path, table.encode())
    print(table, end="")
    print(f"results: {os.path.abspath(settings.output)}, "
          f"{os.path.abspath(settings.markdown_path)}")


if __name__ == "__main__":
    binary.run("bench", _bench, interrupted=stops.NOTHING_WRITTEN)

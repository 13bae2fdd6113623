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
   client work, `process.build_tff_stock`): `ours_over_tff_stock`.
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
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from absl import app, flags, logging

from experiments import errors, quiet_tf, results
from experiments.config import ExperimentConfig, validate
from experiments.errors import UsageError
from tasks import data_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DATA_DIR = os.path.join(ROOT, ".cache", "tff_data")
DATA_FILE = "emnist_all.sqlite"  # tasks.emnist.DATA_FILE (not imported: it loads TFF)
TASK = "emnist_character"
MODEL = "cnn_dropout"
SEED = 0
# Synthetic stand-in for FEMNIST-300: 300 writers, 41,202 train examples
# (137.3 per writer on average).
SYNTHETIC_CLIENTS = 300
SYNTHETIC_EXAMPLES_PER_CLIENT = (100, 175)
DP_NOISE_MULTIPLIER = 1.0
DP_CLIP = 1.0
_NEVER = 10**9  # total_rounds / rounds_per_eval that no benchmark run reaches

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
# --- Flower side by side (experiments/flower_bench.py, experiments/flower_peer.py) ---
flags.DEFINE_bool("flower", False, "Also run the cohort under Flower's simulation engine "
                  "(Ray backend, Keras clients) and report speedup_vs_flower.")
flags.DEFINE_string("flower_python", "", "Python of Flower's venv (default: "
                    ".venv-flower/bin/python, installed by ./run.sh setup_flower).")
flags.DEFINE_integer("flower_cohort", 10, "Cohort size of the Flower comparison.")
flags.DEFINE_float("flower_cpus_per_client", 1.0,
                   "Ray CPUs per Flower virtual client (1: two at a time on two cores).")
flags.DEFINE_integer("flower_timeout", 3600, "Seconds before the Flower run is stopped.")

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Settings:
    """The validated benchmark flags."""

    data_dir: str
    cohorts: tuple[int, ...]
    warmup_rounds: int
    rounds: int
    memory_round_a: int
    memory_round_b: int
    memory_dp_cohort: int
    output: str
    flower_python: str = ""  # empty: no Flower comparison
    flower_cohort: int = 10
    flower_cpus_per_client: float = 1.0
    flower_timeout: int = 3600

    @property
    def markdown_path(self) -> str:
        """The markdown table's path: the JSON's name with .md."""
        return os.path.splitext(self.output)[0] + ".md"


# ----- flags ------------------------------------------------------------------------
def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


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
        from experiments import flower_bench

        flower_python = flower_bench.check_python(
            FLAGS.flower_python or flower_bench.DEFAULT_PYTHON)
        _require(FLAGS.flower_cohort >= 1,
                 f"--flower_cohort={FLAGS.flower_cohort} must be a positive integer")
        _require(FLAGS.flower_cpus_per_client > 0,
                 f"--flower_cpus_per_client={FLAGS.flower_cpus_per_client} must be > 0")
        _require(FLAGS.flower_timeout >= 1,
                 f"--flower_timeout={FLAGS.flower_timeout} must be a positive integer")
    return Settings(data_dir=FLAGS.data_dir, cohorts=tuple(sorted(set(cohorts))),
                    warmup_rounds=FLAGS.warmup_rounds, rounds=FLAGS.rounds,
                    memory_round_a=FLAGS.memory_round_a if FLAGS.memory_round_b else 0,
                    memory_round_b=FLAGS.memory_round_b,
                    memory_dp_cohort=FLAGS.memory_dp_cohort, output=output,
                    flower_python=flower_python, flower_cohort=FLAGS.flower_cohort,
                    flower_cpus_per_client=FLAGS.flower_cpus_per_client,
                    flower_timeout=FLAGS.flower_timeout)


# ----- data -------------------------------------------------------------------------
def real_data_folder(data_dir: str) -> str | None:
    """The folder whose emnist_all.sqlite the benchmark uses, or None for synthetic.

    --data_dir if given, else $TFF_DATA_DIR (as `tasks.data_files.cache_dir`
    resolves it), else the checkout's .cache/tff_data, else ~/.tff. Nothing is
    downloaded.
    """
    if data_dir:
        candidates = [data_dir]
    elif os.environ.get("TFF_DATA_DIR"):
        candidates = [data_files.cache_dir(None)]
    else:
        candidates = [REPO_DATA_DIR, data_files.cache_dir(None)]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, DATA_FILE)):
            return folder
    return None


@contextlib.contextmanager
def data_folder(data_dir: str) -> Iterator[tuple[str, bool]]:
    """Yields (folder holding emnist_all.sqlite, is_real); synthetic data is temporary."""
    folder = real_data_folder(data_dir)
    if folder is not None:
        yield folder, True
        return
    if data_dir:
        print(f"bench: no {DATA_FILE} in --data_dir={data_dir}; using synthetic clients",
              file=sys.stderr)
    from tasks import emnist_fixture

    with tempfile.TemporaryDirectory(prefix="bench-emnist-") as tmp:
        print(f"bench: writing {SYNTHETIC_CLIENTS} synthetic EMNIST clients into {tmp}",
              file=sys.stderr)
        emnist_fixture.write(tmp, num_clients=SYNTHETIC_CLIENTS,
                             examples_per_client=SYNTHETIC_EXAMPLES_PER_CLIENT, seed=SEED)
        yield tmp, False


def data_name(is_real: bool, train_clients: int) -> str:
    """How results must name the data (FEMNIST-300 is never 'EMNIST')."""
    if not is_real:
        return "synthetic"
    return "FEMNIST-300" if train_clients == 300 else f"EMNIST ({train_clients} writers)"


# ----- measurement helpers ------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if not numerator or not denominator else numerator / denominator


def rss_bytes(pid: int | None) -> int | None:
    """Resident set size of a process (VmRSS in /proc/<pid>/status), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (0 if unknown or gone)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_now() -> float:
    """CPU seconds used so far by this process and TFF's worker together.

    On this kind of shared VM the same centralised loop takes 5.3 s or 10.5 s
    (same CPU seconds, no steal, no throttling: its threads wait to be woken);
    CPU time is immune to that, so the per-cohort comparison reports both.
    """
    from experiments import runtime

    return time.process_time() + cpu_seconds(runtime.worker_pid())


def _rss_mib() -> dict[str, float | None]:
    from experiments import runtime

    gc.collect()
    main = rss_bytes(os.getpid())
    worker = rss_bytes(runtime.worker_pid())
    mib = 1024.0 * 1024.0
    return {"main_mib": None if main is None else main / mib,
            "worker_mib": None if worker is None else worker / mib,
            "total_mib": ((main or 0) + (worker or 0)) / mib}


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class _TimedProcess:
    """Wraps a TFF learning process to time `next` alone (the rest of a round is
    sampling, client dataset construction and metric conversion)."""

    def __init__(self, process: Any):
        self._process = process
        self.last_seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._process, name)

    def next(self, state: Any, data: Any) -> Any:
        began = time.perf_counter()
        output = self._process.next(state, data)
        self.last_seconds = time.perf_counter() - began
        return output


def _time_process_next(trainer: Any) -> _TimedProcess | None:
    """Puts a timer around the trainer's process.next, if it has the usual layout."""
    process = getattr(trainer, "_process", None)
    if process is None:
        return None
    timed = _TimedProcess(process)
    trainer._process = timed
    return timed


def _config(data_dir: str, **overrides: Any) -> ExperimentConfig:
    settings: dict[str, Any] = dict(
        task=TASK, model=MODEL, algorithm="fedavg", data_dir=data_dir, seed=SEED,
        total_rounds=_NEVER, rounds_per_eval=_NEVER, rounds_per_checkpoint=_NEVER,
        progress=False)
    settings.update(overrides)
    config = ExperimentConfig(**settings)
    validate(config)
    return config


# ----- the compiled centralised reference ---------------------------------------------
def _balanced_concatenate(datasets: list) -> Any:
    """Concatenates in order, as a balanced tree (no 100-deep iterator chains)."""
    while len(datasets) > 1:
        paired = [a.concatenate(b) for a, b in zip(datasets[::2], datasets[1::2],
                                                   strict=False)]
        if len(datasets) % 2:
            paired.append(datasets[-1])
        datasets = paired
    return datasets[0]


class GraphLoopReference:
    """Centralised SGD over one dataset in a single tf.function call.

    The `for batch in dataset` loop is inside the graph, so there is no
    per-batch Python: the fastest way this machine trains the same model on
    the same batches.
    """

    def __init__(self, config: ExperimentConfig, task: Any):
        import tensorflow as tf

        self._config = config
        self._task = task
        self._model = task.build_model(config.seed)
        self._optimizer = tf.keras.optimizers.SGD(config.client_learning_rate)
        self._optimizer.build(self._model.trainable_variables)
        self._loss = task.loss()
        self._train = tf.function(self._train_all)

    def _train_all(self, dataset: Any) -> tuple[Any, Any, Any]:
        import tensorflow as tf

        variables = self._model.trainable_variables
        examples = tf.constant(0, tf.int32)
        loss_sum = tf.constant(0.0, tf.float32)
        correct = tf.constant(0, tf.int32)
        for x, y in dataset:
            with tf.GradientTape() as tape:
                logits = self._model(x, training=True)
                loss = self._loss(y, logits)
            grads = tape.gradient(loss, variables)
            self._optimizer.apply_gradients(zip(grads, variables, strict=True))
            n = tf.shape(y)[0]
            examples += n
            loss_sum += loss * tf.cast(n, tf.float32)
            predicted = tf.cast(tf.argmax(logits, axis=-1), y.dtype)
            correct += tf.reduce_sum(tf.cast(tf.equal(predicted, y), tf.int32))
        return examples, loss_sum, correct

    def client_datasets(self, round_num: int, clients_per_round: int) -> list:
        """The round's client datasets exactly as FederatedTrainer builds them."""
        from experiments.federated import sampled_client_datasets

        return sampled_client_datasets(self._task, self._config, round_num, clients_per_round)

    def round_dataset(self, round_num: int, clients_per_round: int) -> Any:
        """The round's examples as one dataset, clients in order."""
        return _balanced_concatenate(self.client_datasets(round_num, clients_per_round))

    def run(self, round_num: int, clients_per_round: int) -> tuple[float, float, int]:
        """Trains on the round's examples; returns (seconds, build seconds, examples).

        The time covers building the pipelines too, as a federated round's does;
        build seconds is that part alone.
        """
        began = time.perf_counter()
        dataset = self.round_dataset(round_num, clients_per_round)
        built = time.perf_counter()
        examples, _, _ = self._train(dataset)
        examples = int(examples)  # waits for the result
        return time.perf_counter() - began, built - began, examples

    def traces(self) -> int:
        """How many times the training function was traced (1 when all went well)."""
        return int(self._train.experimental_get_tracing_count())


# ----- the measurements -------------------------------------------------------------
def measure_cohort(task: Any, reference: GraphLoopReference, data_dir: str,
                   cohort: int, warmup: int, rounds: int) -> tuple[dict, dict]:
    """Federated rounds at one cohort size, each followed by the reference on its
    examples; returns (federated, centralized) result dicts."""
    from experiments.federated import FederatedTrainer

    trainer = FederatedTrainer(_config(data_dir, clients_per_round=cohort), task)
    timed = _time_process_next(trainer)
    state = trainer.initial_state()
    fed_seconds: list[float] = []
    next_seconds: list[float] = []
    fed_examples: list[int] = []
    ref_seconds: list[float] = []
    ref_build: list[float] = []
    ref_examples: list[int] = []
    fed_cpu: list[float] = []
    ref_cpu: list[float] = []
    ticks = None
    for round_num in range(1, warmup + rounds + 1):
        if round_num == warmup + 1:
            ticks = cpu_ticks()
        began, cpu_before = time.perf_counter(), _cpu_now()
        state, row = trainer.run_round(state, round_num)
        seconds, cpu_between = time.perf_counter() - began, _cpu_now()
        central, build, central_examples = reference.run(round_num, cohort)
        round_cpu, central_cpu = cpu_between - cpu_before, _cpu_now() - cpu_between
        measured = round_num > warmup
        _progress(f"cohort {cohort} round {round_num}/{warmup + rounds}"
                  f"{'' if measured else ' (warm-up)'}: federated {seconds:.2f} s, "
                  f"centralised {central:.2f} s, {row['train_examples']} examples")
        if not measured:
            continue
        fed_seconds.append(seconds)
        fed_examples.append(int(row["train_examples"]))
        if timed is not None:
            next_seconds.append(timed.last_seconds)
        ref_seconds.append(central)
        ref_build.append(build)
        ref_examples.append(central_examples)
        fed_cpu.append(round_cpu)
        ref_cpu.append(central_cpu)
    fed_rate = [n / s for n, s in zip(fed_examples, fed_seconds, strict=True)]
    ref_rate = [n / s for n, s in zip(ref_examples, ref_seconds, strict=True)]
    paired = [f / c for f, c in zip(fed_seconds, ref_seconds, strict=True)]
    other = [f - n for f, n in zip(fed_seconds, next_seconds, strict=False)]
    federated = {
        "median_round_seconds": _median(fed_seconds),
        "examples_per_second": _median(fed_rate),
        "median_examples_per_round": _median([float(n) for n in fed_examples]),
        "median_process_next_seconds": _median(next_seconds),
        "median_other_seconds": _median(other),
        "cpu_steal_percent": steal_percent(ticks, cpu_ticks()),
        "round_seconds": fed_seconds,
        "round_examples": fed_examples,
        "process_next_seconds": next_seconds,
        "median_cpu_seconds": _median(fed_cpu),
        "cpu_seconds": fed_cpu,
    }
    centralized = {
        "median_seconds": _median(ref_seconds),
        "examples_per_second": _median(ref_rate),
        "median_build_seconds": _median(ref_build),
        "seconds": ref_seconds,
        "build_seconds": ref_build,
        "examples": ref_examples,
        "same_examples_as_federated": ref_examples == fed_examples,
        "median_paired_ratio": _median(paired),
        "median_cpu_seconds": _median(ref_cpu),
        "cpu_seconds": ref_cpu,
    }
    return federated, centralized


def per_client_overhead(cohorts: list[int], federated: dict[str, dict],
                        centralized: dict[str, dict], mean_client_examples: float
                        ) -> dict:
    """Federated seconds per extra client beyond the centralised compute of one client."""
    result: dict[str, Any] = {
        "per_client_overhead_ms": None,
        "federated_slope_ms_per_client": None,
        "centralized_slope_ms_per_client": None,
        "centralized_seconds_per_example": None,
        "mean_examples_per_client": mean_client_examples,
        "fit": "least squares over the per-cohort median round times",
    }
    per_example = [s / n for c in cohorts for s, n in zip(
        centralized[str(c)]["seconds"], centralized[str(c)]["examples"], strict=True)
        if n > 0]
    if per_example:
        result["centralized_seconds_per_example"] = float(np.median(per_example))
    if len(cohorts) < 2:
        result["note"] = "needs at least two cohort sizes"
        return result
    x = np.asarray(cohorts, dtype=float)
    fed = np.asarray([federated[str(c)]["median_round_seconds"] for c in cohorts])
    ref = np.asarray([centralized[str(c)]["median_seconds"] for c in cohorts])
    fed_slope = float(np.polyfit(x, fed, 1)[0])
    result["federated_slope_ms_per_client"] = 1000.0 * fed_slope
    result["centralized_slope_ms_per_client"] = 1000.0 * float(np.polyfit(x, ref, 1)[0])
    compute = (result["centralized_seconds_per_example"] or 0.0) * mean_client_examples
    result["centralized_ms_per_client"] = 1000.0 * compute
    result["per_client_overhead_ms"] = 1000.0 * (fed_slope - compute)
    return result


def _seconds(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def _interleaved(reference: GraphLoopReference, cohort: int, warmup: int, rounds: int,
                 label: str, arms: dict[str, Callable[[list], Any]]) -> dict[str, list[float]]:
    """Seconds of each arm on each round's client datasets, then of the centralised
    loop on the same examples (key "centralized"); warm-up rounds are dropped."""
    times: dict[str, list[float]] = {name: [] for name in [*arms, "centralized"]}
    for round_num in range(1, warmup + rounds + 1):
        errors.raise_if_stop_requested()  # a stop swallowed by TF or a GC callback
        datasets = reference.client_datasets(round_num, cohort)
        measured = {name: _seconds(lambda f=arm, d=datasets: f(d)) for name, arm in arms.items()}
        measured["centralized"] = reference.run(round_num, cohort)[0]
        _progress(f"{label} round {round_num}/{warmup + rounds}: " + ", ".join(
            f"{name} {seconds:.2f} s" for name, seconds in measured.items()))
        if round_num > warmup:
            for name, seconds in measured.items():
                times[name].append(seconds)
    return times


def _paired_median(numerators: list[float], denominators: list[float]) -> float | None:
    return _median([n / d for n, d in zip(numerators, denominators, strict=True)])


def measure_client_split(standard: Any, reference: GraphLoopReference, cohort: int,
                         warmup: int, rounds: int) -> dict:
    """Separates the fixed cost of a client from the cost of its compute.

    Each round's examples are trained three ways, interleaved: as `cohort`
    clients, as ONE client holding all of them (same TFF process and state), and
    by the compiled centralised loop. (cohort clients - one client) / (cohort - 1)
    is the fixed cost per extra client with the compute held constant; one
    client / centralised is how fast the client step trains the same examples.
    """
    state = standard.initialize()
    times = _interleaved(reference, cohort, warmup, rounds, "client split", {
        "split": lambda d: standard.next(state, d),
        "one_client": lambda d: standard.next(state, [_balanced_concatenate(list(d))]),
    })
    split, whole, central = times["split"], times["one_client"], times["centralized"]
    per_client = [(s - w) / (cohort - 1) * 1000 for s, w in zip(split, whole, strict=True)]
    return {
        "cohort": cohort,
        "median_split_seconds": _median(split),
        "median_one_client_seconds": _median(whole),
        "median_centralized_seconds": _median(central),
        "fixed_overhead_ms_per_client": _median(per_client),
        "one_client_over_centralized": _paired_median(whole, central),
        "split_seconds": split, "one_client_seconds": whole, "centralized_seconds": central,
    }


def measure_tff_stock(task: Any, ours: Any, reference: GraphLoopReference, config: Any,
                      warmup: int, rounds: int) -> dict:
    """Our FedAvg process against TFF's stock one (same algorithm, TFF's client
    work) and the centralised loop, interleaved on each round's clients: what
    `experiments.client_work` saves."""
    from experiments import process

    stock = process.build_tff_stock(config, task)
    states = (ours.initialize(), stock.initialize())
    times = _interleaved(reference, config.clients_per_round, warmup, rounds, "stock", {
        "ours": lambda d: ours.next(states[0], d),
        "tff_stock": lambda d: stock.next(states[1], d),
    })
    return {
        "cohort": config.clients_per_round,
        "median_seconds": {name: _median(values) for name, values in times.items()},
        "ours_over_tff_stock": _paired_median(times["ours"], times["tff_stock"]),
        "ours_ratio_to_centralized": _paired_median(times["ours"], times["centralized"]),
        "tff_stock_ratio_to_centralized": _paired_median(times["tff_stock"],
                                                         times["centralized"]),
        "seconds": times,
    }


def measure_memory(task: Any, data_dir: str, cohort: int, round_a: int,
                   round_b: int) -> dict:
    """RSS of this process plus TFF's worker at two rounds of one long run."""
    from experiments.federated import FederatedTrainer

    trainer = FederatedTrainer(_config(data_dir, clients_per_round=cohort), task)
    state = trainer.initial_state()
    every = max(1, round_b // 20)
    trace: list[list[float]] = []
    seconds: list[float] = []
    at: dict[int, dict] = {}
    for round_num in range(1, round_b + 1):
        began = time.perf_counter()
        state, _ = trainer.run_round(state, round_num)
        seconds.append(time.perf_counter() - began)
        if round_num in (round_a, round_b) or round_num % every == 0:
            rss = _rss_mib()
            trace.append([round_num, rss["total_mib"]])
            if round_num in (round_a, round_b):
                at[round_num] = rss
            _progress(f"memory run round {round_num}/{round_b}: "
                      f"{rss['total_mib']:.0f} MiB (main + worker)")
    a, b = at[round_a]["total_mib"], at[round_b]["total_mib"]
    return {
        "cohort": cohort, "round_a": round_a, "round_b": round_b,
        "rss_a": at[round_a], "rss_b": at[round_b],
        "growth_percent": 100.0 * (b - a) / a if a else None,
        "median_round_seconds": _median(seconds[round_a:]),
        "trace_total_mib": trace,
    }


def measure_dp(task: Any, data_dir: str, population: int, cohort: int, warmup: int,
               rounds: int) -> dict:
    """Unweighted FedAvg without and with fixed-clip DP, rounds interleaved ABBA."""
    from experiments import privacy
    from experiments.federated import FederatedTrainer

    plain_config = _config(data_dir, algorithm="fedavg_unweighted", clients_per_round=cohort)
    dp_config = privacy.resolve(
        _config(data_dir, algorithm="fedavg_unweighted", clients_per_round=cohort,
                dp="fixed", noise_multiplier=DP_NOISE_MULTIPLIER, clip=DP_CLIP),
        population)
    arms = {"plain": FederatedTrainer(plain_config, task),
            "dp": FederatedTrainer(dp_config, task)}
    states = {name: t.initial_state() for name, t in arms.items()}
    seconds: dict[str, list[float]] = {"plain": [], "dp": []}
    for round_num in range(1, warmup + rounds + 1):
        order = ("plain", "dp") if round_num % 2 else ("dp", "plain")
        for name in order:
            began = time.perf_counter()
            states[name], _ = arms[name].run_round(states[name], round_num)
            if round_num > warmup:
                seconds[name].append(time.perf_counter() - began)
        _progress(f"DP round {round_num}/{warmup + rounds} done")
    mechanism = privacy.mechanism(dp_config, population)
    began = time.perf_counter()
    privacy.epsilon_rdp(mechanism, warmup + rounds, 1)
    accounting = time.perf_counter() - began
    plain, dp = _median(seconds["plain"]), _median(seconds["dp"])
    return {
        "cohort": cohort, "algorithm": "fedavg_unweighted", "dp": "fixed",
        "noise_multiplier": DP_NOISE_MULTIPLIER, "clip": DP_CLIP,
        "median_round_seconds_plain": plain, "median_round_seconds_dp": dp,
        "overhead_ratio": dp / plain if plain else None,
        "accounting_seconds_per_round": accounting,
        "round_seconds_plain": seconds["plain"], "round_seconds_dp": seconds["dp"],
    }


def measure_flower(task: Any, data_dir: str, settings: Settings) -> dict:
    """The cohort under Flower's simulation engine, then under ours, back to back.

    Same model and initial weights, same clients in the same rounds, same
    local epochs, batch size and learning rate; medians over the rounds after
    the warm-up ones. `speedup_vs_flower` = Flower's median / ours.
    """
    from experiments import flower_bench
    from experiments.federated import FederatedTrainer

    cohort, warmup, rounds = settings.flower_cohort, settings.warmup_rounds, settings.rounds
    config = _config(data_dir, clients_per_round=cohort)
    with tempfile.TemporaryDirectory(prefix="bench-flower-") as tmp:
        data = os.path.join(tmp, "peer.npz")
        flower_bench.write_peer_data(data, task, config, warmup + rounds, warmup)
        _progress(f"Flower: {warmup + rounds} rounds at cohort {cohort} "
                  f"(Ray start-up first; this takes a few minutes)")
        log = os.path.splitext(settings.output)[0] + ".flower.log"
        flower = flower_bench.run_peer(settings.flower_python, data,
                                       os.path.join(tmp, "flower.json"), log,
                                       settings.flower_timeout,
                                       settings.flower_cpus_per_client)
    trainer = FederatedTrainer(config, task)
    state = trainer.initial_state()
    ours: list[float] = []
    examples: list[int] = []
    for round_num in range(1, warmup + rounds + 1):
        began = time.perf_counter()
        state, row = trainer.run_round(state, round_num)
        ours.append(time.perf_counter() - began)
        examples.append(int(row["train_examples"]))
    ours_median = _median(ours[warmup:])
    theirs = flower.get("median_round_seconds")
    return {
        "cohort": cohort, "warmup_rounds": warmup, "rounds": rounds,
        "flower": flower,
        "flower_round_seconds": theirs,
        "our_round_seconds": ours_median,
        "our_round_seconds_all": ours,
        "speedup_vs_flower": theirs / ours_median if theirs and ours_median else None,
        "same_examples_as_flower": flower.get("round_examples") == examples,
    }


COMPRESSION_METHODS = (("quantize", {"quantization_bits": 8}),
                       ("rotate_quantize", {"quantization_bits": 2}),
                       ("random_mask", {"keep_fraction": 0.05}),
                       ("low_rank", {"rank": 8}))


def _codec_seconds(method: Any, shapes: list[tuple[int, ...]], repeats: int = 5) -> float:
    """Median seconds of one client's encode + the server's decode, compiled."""
    import tensorflow as tf

    from experiments import compression

    rng = np.random.default_rng(0)
    update = [tf.constant(rng.normal(size=s).astype(np.float32) * 1e-2) for s in shapes]

    @tf.function(autograph=False)  # no Python control flow to convert
    def codec(round_seed):
        payload = compression.encode(method, update, round_seed)
        return compression.decode(method, payload, shapes, round_seed)

    codec(tf.constant(0))  # trace
    seconds = []
    for r in range(1, repeats + 1):
        began = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), codec(tf.constant(r)))
        seconds.append(time.perf_counter() - began)
    return _median(seconds)


def measure_compression(task: Any, data_dir: str, cohort: int, warmup: int,
                        rounds: int) -> dict:
    """Encode + decode cost of each compression method at `cohort` clients.

    Two measures: (1) per method, a cohort's encodes and decodes of an update
    of the model's shape (compiled, run alone) as a fraction of the median
    plain FedAvg round; (2) whole rounds of FedAvg without and with
    `rotate_quantize` at 2 bits, interleaved ABBA: `overhead_ratio`.
    """
    from experiments import compression
    from experiments.federated import FederatedTrainer

    plain_config = _config(data_dir, clients_per_round=cohort)
    packed_config = _config(data_dir, clients_per_round=cohort,
                            compression="rotate_quantize", quantization_bits=2)
    arms = {"plain": FederatedTrainer(plain_config, task),
            "compressed": FederatedTrainer(packed_config, task)}
    states = {name: t.initial_state() for name, t in arms.items()}
    seconds: dict[str, list[float]] = {"plain": [], "compressed": []}
    for round_num in range(1, warmup + rounds + 1):
        order = ("plain", "compressed") if round_num % 2 else ("compressed", "plain")
        for name in order:
            began = time.perf_counter()
            states[name], _ = arms[name].run_round(states[name], round_num)
            if round_num > warmup:
                seconds[name].append(time.perf_counter() - began)
        _progress(f"compression round {round_num}/{warmup + rounds} done")
    plain, packed = _median(seconds["plain"]), _median(seconds["compressed"])
    shapes = [tuple(w.shape) for w in task.build_model(SEED).trainable_weights]
    methods = {}
    for name, flags_ in COMPRESSION_METHODS:
        method = compression.Method(name, bits=flags_.get("quantization_bits", 8),
                                    keep_fraction=flags_.get("keep_fraction", 0.1),
                                    rank=flags_.get("rank", 4))
        codec = _codec_seconds(method, shapes)
        methods[name] = {**flags_, "codec_seconds_per_client": codec,
                         "fraction_of_round": cohort * codec / plain if plain else None}
    return {
        "cohort": cohort, "median_round_seconds_plain": plain,
        "median_round_seconds_rotate_quantize_2bit": packed,
        "overhead_ratio": packed / plain if plain else None,
        "max_codec_fraction_of_round": max(
            (m["fraction_of_round"] for m in methods.values()
             if m["fraction_of_round"] is not None), default=None),
        "methods": methods,
        "round_seconds_plain": seconds["plain"], "round_seconds_compressed": seconds["compressed"],
    }


# ----- machine and output -------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_ticks(path: str = "/proc/stat") -> tuple[int, int] | None:
    """(stolen, total) CPU ticks of the machine so far; None where unreadable.

    Steal is time the hypervisor gave our virtual CPUs to another guest, one
    way a shared host makes the same computation slower; the benchmark
    reports it beside the timings it may have spoiled.
    """
    try:
        with open(path) as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_percent(start: tuple[int, int] | None, end: tuple[int, int] | None
                  ) -> float | None:
    """Share of CPU time stolen by the hypervisor between two `cpu_ticks`."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    return 100.0 * (end[0] - start[0]) / (end[1] - start[1])


def machine_info() -> dict:
    """Where the numbers were measured."""
    import tensorflow as tf
    import tensorflow_federated as tff

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tensorflow_federated": tff.__version__,
        "loadavg_at_start": list(os.getloadavg()),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(result: dict) -> str:
    """The results as a markdown table (plus one line of context)."""
    m, d = result["machine"], result["data"]
    lines = [
        f"# Benchmark: FedAvg {result['settings']['model']} on {d['name']}",
        "",
        f"{m['nproc']} cores ({m['cpu_model']}), Python {m['python']}, "
        f"TF {m['tensorflow']}, TFF {m['tensorflow_federated']}; load average "
        f"{m['loadavg_at_start'][0]:.1f} at start, {m['loadavg_at_end'][0]:.1f} at end; "
        f"CPU time stolen by the hypervisor {_fmt(m.get('cpu_steal_percent'), '.1f')}%. "
        f"Medians of {result['settings']['rounds']} rounds after "
        f"{result['settings']['warmup_rounds']} warm-up rounds.",
        "",
        "| cohort | federated s/round | examples/round | federated examples/s "
        "| process.next s | other s | centralised s | centralised examples/s "
        "| ratio to centralised | CPU-time ratio | CPU steal % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result["settings"]["cohorts"]:
        f, r = result["federated"][str(c)], result["centralized"][str(c)]
        lines.append(
            f"| {c} | {_fmt(f['median_round_seconds'], '.3f')} "
            f"| {_fmt(f['median_examples_per_round'], '.0f')} "
            f"| {_fmt(f['examples_per_second'], '.0f')} "
            f"| {_fmt(f['median_process_next_seconds'], '.3f')} "
            f"| {_fmt(f['median_other_seconds'], '.3f')} "
            f"| {_fmt(r['median_seconds'], '.3f')} "
            f"| {_fmt(r['examples_per_second'], '.0f')} "
            f"| {_fmt(result['ratio_to_centralized'][str(c)], '.2f')} "
            f"| {_fmt(result['cpu_ratio_to_centralized'][str(c)], '.2f')} "
            f"| {_fmt(f.get('cpu_steal_percent'), '.1f')} |")
    o, mem, dp = result["overhead"], result["memory"], result["dp"]
    lines += ["", "| measure | value |", "|---|---:|",
              f"| per-client fixed overhead (ms) | "
              f"{_fmt(result['per_client_overhead_ms'], '.1f')} |",
              f"| federated slope (ms per client) | "
              f"{_fmt(o['federated_slope_ms_per_client'], '.1f')} |",
              f"| centralised compute per mean client (ms) | "
              f"{_fmt(o.get('centralized_ms_per_client'), '.1f')} |"]
    split = result["client_split"]
    lines += [f"| fixed cost per extra client, same examples as {split['cohort']} clients "
              f"or 1 (ms) | {_fmt(split['fixed_overhead_ms_per_client'], '.1f')} |",
              f"| one client / centralised loop, same examples | "
              f"{_fmt(split['one_client_over_centralized'], '.2f')} |"]
    stock = result["tff_stock"]
    lines += [f"| our FedAvg round / TFF's stock FedAvg round, cohort {stock['cohort']} | "
              f"{_fmt(stock['ours_over_tff_stock'], '.2f')} |",
              f"| TFF's stock FedAvg round / centralised loop | "
              f"{_fmt(stock['tff_stock_ratio_to_centralized'], '.2f')} |"]
    if mem is not None:
        lines += [
            f"| RSS main + worker at round {mem['round_a']} (MiB) | "
            f"{_fmt(mem['rss_a']['total_mib'], '.0f')} |",
            f"| RSS main + worker at round {mem['round_b']} (MiB) | "
            f"{_fmt(mem['rss_b']['total_mib'], '.0f')} |",
            f"| memory growth (%) | {_fmt(result['memory_growth_percent'], '.1f')} |"]
    else:
        lines.append("| memory growth (%) | skipped |")
    lines += [f"| DP overhead ratio (fixed clip, z=1, cohort {dp['cohort']}) | "
              f"{_fmt(result['dp_overhead_ratio'], '.2f')} |",
              f"| compression overhead ratio (rotate_quantize 2 bits, round / plain round) | "
              f"{_fmt(result['compression_overhead_ratio'], '.2f')} |"]
    for name, m in result["compression"].get("methods", {}).items():
        lines.append(f"| {name} encode + decode x cohort / plain round | "
                     f"{_fmt(m['fraction_of_round'], '.3f')} |")
    flower = result.get("flower")
    if flower is not None:
        c = flower["cohort"]
        lines += [f"| Flower {flower['flower'].get('flwr', '')} simulation s/round "
                  f"(cohort {c}, Ray, Keras clients) | "
                  f"{_fmt(flower['flower_round_seconds'], '.3f')} |",
                  f"| ours s/round, same clients, right after | "
                  f"{_fmt(flower['our_round_seconds'], '.3f')} |",
                  f"| speedup vs Flower | {_fmt(flower['speedup_vs_flower'], '.2f')} |"]
    return "\n".join(lines) + "\n"


# ----- the run ----------------------------------------------------------------------
def run(settings: Settings, progress: Callable[[str], None] = _progress) -> dict:
    """Runs every measurement in this process; returns the JSON-able result."""
    from experiments import process, runtime
    from tasks import registry

    began = time.monotonic()
    ticks = cpu_ticks()
    with data_folder(settings.data_dir) as (folder, is_real), runtime.session():
        base = _config(folder)
        task = registry.get(base.task, base.task_config())
        summary = task.data_summary()
        population = summary["train_clients"]
        for name, size in [("--cohorts", max(settings.cohorts)),
                           ("--memory_dp_cohort", settings.memory_dp_cohort)]:
            _require(size <= population,
                     f"{name}: cohort {size} exceeds the {population} training clients "
                     f"of the data in {folder}; use at most {population}")
        mean_client = summary["train_examples"] / population
        machine = machine_info()
        progress(f"data: {data_name(is_real, population)} ({population} clients, "
                 f"{mean_client:.1f} train examples each on average)")

        reference = GraphLoopReference(base, task)
        federated: dict[str, dict] = {}
        centralized: dict[str, dict] = {}
        for cohort in settings.cohorts:
            federated[str(cohort)], centralized[str(cohort)] = measure_cohort(
                task, reference, folder, cohort, settings.warmup_rounds, settings.rounds)
            gc.collect()
        ratios = {
            str(c): _ratio(federated[str(c)]["median_round_seconds"],
                           centralized[str(c)]["median_seconds"])
            for c in settings.cohorts}
        cpu_ratios = {
            str(c): _ratio(federated[str(c)]["median_cpu_seconds"],
                           centralized[str(c)]["median_cpu_seconds"])
            for c in settings.cohorts}
        overhead = per_client_overhead(list(settings.cohorts), federated, centralized,
                                       mean_client)
        # One FedAvg process at the memory/DP cohort for the split and stock runs.
        small = _config(folder, clients_per_round=settings.memory_dp_cohort)
        standard = process.build(small, task)
        split = measure_client_split(standard, reference, settings.memory_dp_cohort,
                                     settings.warmup_rounds, settings.rounds)
        stock = measure_tff_stock(task, standard, reference, small, settings.warmup_rounds,
                                  settings.rounds)
        dp = measure_dp(task, folder, population, settings.memory_dp_cohort,
                        settings.warmup_rounds, settings.rounds)
        compression = measure_compression(task, folder, settings.memory_dp_cohort,
                                          settings.warmup_rounds, settings.rounds)
        flower = (measure_flower(task, folder, settings) if settings.flower_python
                  else None)
        memory = None
        if settings.memory_round_b:
            memory = measure_memory(task, folder, settings.memory_dp_cohort,
                                    settings.memory_round_a, settings.memory_round_b)
    machine["loadavg_at_end"] = list(os.getloadavg())
    machine["cpu_steal_percent"] = steal_percent(ticks, cpu_ticks())
    return {
        "machine": machine,
        "data": {"name": data_name(is_real, population), "real": is_real,
                 "file": summary["file"] if is_real else "synthetic (tasks.emnist_fixture)",
                 "train_clients": population, "train_examples": summary["train_examples"],
                 "mean_examples_per_client": mean_client},
        "settings": {"task": TASK, "model": MODEL, "algorithm": base.algorithm,
                     "client_batch_size": base.client_batch_size,
                     "client_learning_rate": base.client_learning_rate,
                     "client_epochs_per_round": base.client_epochs_per_round,
                     "seed": SEED, "cohorts": list(settings.cohorts),
                     "warmup_rounds": settings.warmup_rounds, "rounds": settings.rounds,
                     "memory_round_a": settings.memory_round_a,
                     "memory_round_b": settings.memory_round_b,
                     "memory_dp_cohort": settings.memory_dp_cohort},
        "federated": federated,
        "centralized": centralized,
        "centralized_traces": reference.traces(),
        "ratio_to_centralized": ratios,
        "cpu_ratio_to_centralized": cpu_ratios,
        "overhead": overhead,
        "per_client_overhead_ms": overhead["per_client_overhead_ms"],
        "client_split": split,
        "tff_stock": stock,
        "ours_over_tff_stock": stock["ours_over_tff_stock"],
        "fixed_overhead_ms_per_client": split["fixed_overhead_ms_per_client"],
        "one_client_over_centralized": split["one_client_over_centralized"],
        "memory": memory,
        "memory_growth_percent": None if memory is None else memory["growth_percent"],
        "dp": dp,
        "dp_overhead_ratio": dp["overhead_ratio"],
        "compression": compression,
        "compression_overhead_ratio": compression["overhead_ratio"],
        "flower": flower,
        "flower_round_seconds": None if flower is None else flower["flower_round_seconds"],
        "our_round_seconds_vs_flower": None if flower is None else flower["our_round_seconds"],
        "speedup_vs_flower": None if flower is None else flower["speedup_vs_flower"],
        "wall_seconds": time.monotonic() - began,
    }


def main(argv: list[str]) -> None:
    quiet_tf.filter_stderr()  # grappler's harmless fetch-node line when DP is traced
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TFF's INFO lines are noise here
    if len(argv) > 1:
        print(f"bench: error: unexpected arguments {argv[1:]}; flags look like "
              f"--name=value", file=sys.stderr)
        sys.exit(errors.exit_code())
    def body() -> None:
        settings = settings_from_flags()
        result = run(settings)
        table = markdown(result)
        results.atomic_write(settings.output,
                             (json.dumps(result, indent=2) + "\n").encode())
        results.atomic_write(settings.markdown_path, table.encode())
        print(table, end="")
        print(f"results: {os.path.abspath(settings.output)}, "
              f"{os.path.abspath(settings.markdown_path)}")

    errors.guarded("bench", body, errors.NOTHING_WRITTEN)


if __name__ == "__main__":
    app.run(main, flags_parser=errors.flags_parser("bench"))

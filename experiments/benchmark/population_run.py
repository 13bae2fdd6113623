"""One population's training runs for the benchmark's population section, in a fresh process.

    python -m experiments.benchmark.population_run --data_dir=DIR --data_store=disk \\
        --cohorts=10,100 --warmup_rounds=1 --rounds=3

`experiments.benchmark.population` starts this once per population and data
store, so each resident-memory reading is of a process that has held only
that population. It builds `stackoverflow_word` (`lstm_small`, 20 examples
per client and round) on the
StackOverflow-layout file in --data_dir, then for each cohort a FedAvg
trainer, and runs --warmup_rounds + --rounds rounds. It prints one JSON line:
the task's build time, and per cohort the time to the first round's start
(task build + trainer set-up), the median round's wall and CPU seconds (this
process plus TFF's worker) and the resident memory after the rounds; and the
peak resident memory of this process (VmHWM). With --data_store=paired it
builds the task from both stores and alternates their rounds, for a round-time
ratio that load on the machine cannot skew (`measure_paired`).
"""

from __future__ import annotations

import dataclasses
import json
import time

from absl import flags

from experiments.core import binary, stops, tff_worker

TASK = "stackoverflow_word"
MODEL = "lstm_small"
# Examples each client trains on per round (one batch of 20): the model's 10,004-way
# softmax would otherwise make a 100-client round minutes long, while the data path
# still reads each sampled client's whole slice (its dataset is built from it).
MAX_ELEMENTS = 20
# The paired run measures at least this many client trainings per store and cohort
# (30 rounds of 10): a 2-second round varies by 20-40% with the sampled clients and the
# machine's load, so a handful of paired rounds cannot place the ratio within 5%.
PAIRED_CLIENT_TRAININGS = 300
_FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defined only when run as a program (the bench's own flags share these names)."""
    flags.DEFINE_string("data_dir", "", "Folder holding the stackoverflow.sqlite to train on.")
    flags.DEFINE_enum("data_store", "disk", ["disk", "memory", "paired"],
                      "The task's --data_store; paired: both, rounds alternating.")
    flags.DEFINE_list("cohorts", ["10", "100"], "Cohort sizes, run one after the other.")
    flags.DEFINE_integer("warmup_rounds", 1, "Unmeasured rounds per cohort.", lower_bound=0)
    flags.DEFINE_integer("rounds", 3, "Measured rounds per cohort.", lower_bound=1)


def measure(data_dir: str, data_store: str, cohorts: list[int], warmup: int,
            rounds: int) -> dict:
    """The runs described in the module docstring; a JSON-able dict."""
    # TensorFlow-heavy imports here: the program answers --help without them.
    from experiments.benchmark import machine
    from experiments.benchmark.configs import experiment_config
    from experiments.benchmark.timing import median
    from experiments.training.federated_trainer import FederatedTrainer
    from tasks import registry

    began = time.monotonic()
    config = experiment_config(data_dir, task=TASK, model=MODEL, data_store=data_store,
                               max_elements_per_client=MAX_ELEMENTS)
    task = registry.get(config.task, config.task_config())
    built = time.monotonic() - began
    result = {"task_build_seconds": built, "train_clients": len(task.train_data.client_ids),
              "cohorts": {}}
    for cohort in cohorts:
        set_up = time.monotonic()
        trainer = FederatedTrainer(dataclasses.replace(config, clients_per_round=cohort), task)
        state = trainer.initial_state()
        first_round_start = built + time.monotonic() - set_up
        walls, cpus = [], []
        for round_num in range(1, warmup + rounds + 1):
            cpu, wall = machine.cpu_now(), time.perf_counter()
            state, _ = trainer.run_round(state, round_num)
            walls.append(time.perf_counter() - wall)
            cpus.append(machine.cpu_now() - cpu)
        result["cohorts"][str(cohort)] = {
            "first_round_start_seconds": first_round_start,
            "median_round_seconds": median(walls[warmup:]),
            "median_round_cpu_seconds": median(cpus[warmup:]),
            "round_seconds": walls, "rss_mib": machine.rss_mib()}
    result["peak_main_mib"] = machine.peak_rss_mib()
    return result


def measure_paired(data_dir: str, cohorts: list[int], warmup: int, rounds: int) -> dict:
    """Both stores' tasks in this process, their rounds alternating (which goes first
    alternates too), so that load and drift hit both alike: per cohort the median
    round-by-round ratio, store over memory, of wall and CPU seconds, over at least
    `rounds` and at least PAIRED_CLIENT_TRAININGS / cohort measured rounds."""
    from experiments.benchmark import machine
    from experiments.benchmark.configs import experiment_config
    from experiments.benchmark.timing import median, paired_median, ratio
    from experiments.training.federated_trainer import FederatedTrainer
    from tasks import registry

    configs = {store: experiment_config(data_dir, task=TASK, model=MODEL, data_store=store,
                                        max_elements_per_client=MAX_ELEMENTS)
               for store in ("memory", "disk")}
    tasks = {store: registry.get(c.task, c.task_config()) for store, c in configs.items()}
    result: dict = {"cohorts": {}}
    for cohort in cohorts:
        trainers = {store: FederatedTrainer(
            dataclasses.replace(configs[store], clients_per_round=cohort), tasks[store])
            for store in configs}
        states = {store: trainer.initial_state() for store, trainer in trainers.items()}
        walls: dict[str, list[float]] = {store: [] for store in configs}
        cpus: dict[str, list[float]] = {store: [] for store in configs}
        measured = max(rounds, -(-PAIRED_CLIENT_TRAININGS // cohort))
        for round_num in range(1, warmup + measured + 1):
            order = ("disk", "memory") if round_num % 2 else ("memory", "disk")
            for store in order:
                cpu, wall = machine.cpu_now(), time.perf_counter()
                states[store], _ = trainers[store].run_round(states[store], round_num)
                walls[store].append(time.perf_counter() - wall)
                cpus[store].append(machine.cpu_now() - cpu)
        result["cohorts"][str(cohort)] = {
            "measured_rounds": measured, "round_seconds": walls, "round_cpu_seconds": cpus,
            **{f"median_round_seconds_{s}": median(walls[s][warmup:]) for s in configs},
            "round_seconds_disk_over_memory": paired_median(walls["disk"][warmup:],
                                                            walls["memory"][warmup:]),
            "round_cpu_disk_over_memory": paired_median(cpus["disk"][warmup:],
                                                        cpus["memory"][warmup:]),
            "total_seconds_disk_over_memory": ratio(sum(walls["disk"][warmup:]),
                                                    sum(walls["memory"][warmup:]))}
    return result


def _main() -> None:
    cohorts = [int(c) for c in _FLAGS.cohorts]
    with tff_worker.session():
        if _FLAGS.data_store == "paired":
            result = measure_paired(_FLAGS.data_dir, cohorts, _FLAGS.warmup_rounds,
                                    _FLAGS.rounds)
        else:
            result = measure(_FLAGS.data_dir, _FLAGS.data_store, cohorts,
                             _FLAGS.warmup_rounds, _FLAGS.rounds)
    print(json.dumps(result))


if __name__ == "__main__":
    _define_flags()
    binary.run("population_run", _main, interrupted=stops.NOTHING_WRITTEN)

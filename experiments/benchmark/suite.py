"""The whole benchmark in one process: every measurement, in order, into one result.

Running everything in ONE process keeps ratios robust on a noisy machine:
both sides of a ratio see the same load. The order is the cohorts (each
round against the centralised loop), the client split and TFF's stock
FedAvg, DP, compression, Flower (with --flower), the long memory run, and
last the population section (each of its runs in a process of its own).
The result is JSON-able; its keys are what bench.json holds.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from typing import Any

from experiments.algorithms import builder
from experiments.benchmark import machine, timing
from experiments.benchmark.client_overhead import measure_client_split, measure_tff_stock
from experiments.benchmark.cohorts import measure_cohort, per_client_overhead
from experiments.benchmark.compression_cost import measure_compression
from experiments.benchmark.configs import experiment_config
from experiments.benchmark.data import data_folder, data_name
from experiments.benchmark.dp_cost import measure_dp
from experiments.benchmark.flower_comparison import measure_flower
from experiments.benchmark.memory_growth import measure_memory
from experiments.benchmark.population import measure_populations
from experiments.benchmark.reference import GraphLoopReference
from experiments.benchmark.settings import MODEL, SEED, TASK, Settings
from experiments.core import tff_worker
from experiments.core.errors import UsageError
from tasks import registry


def _check_cohorts_fit(settings: Settings, population: int, folder: str) -> None:
    """Raises a UsageError if a cohort asks for more clients than the data has."""
    for name, size in [("--cohorts", max(settings.cohorts)),
                       ("--memory_dp_cohort", settings.memory_dp_cohort)]:
        if size > population:
            raise UsageError(f"{name}: cohort {size} exceeds the {population} training "
                             f"clients of the data in {folder}; use at most {population}")


def _measure_cohorts(settings: Settings, task: Any, reference: GraphLoopReference,
                     folder: str, mean_client: float) -> dict[str, Any]:
    """Each cohort size against the centralised loop, their ratios, the per-client cost."""
    federated: dict[str, dict] = {}
    centralized: dict[str, dict] = {}
    for cohort in settings.cohorts:
        federated[str(cohort)], centralized[str(cohort)] = measure_cohort(
            task, reference, folder, cohort, settings.warmup_rounds, settings.rounds)
        gc.collect()
    keys = [str(c) for c in settings.cohorts]
    return {
        "federated": federated,
        "centralized": centralized,
        "ratio_to_centralized": {k: timing.ratio(federated[k]["median_round_seconds"],
                                                 centralized[k]["median_seconds"])
                                 for k in keys},
        "cpu_ratio_to_centralized": {k: timing.ratio(federated[k]["median_cpu_seconds"],
                                                     centralized[k]["median_cpu_seconds"])
                                     for k in keys},
        "overhead": per_client_overhead(list(settings.cohorts), federated, centralized,
                                        mean_client),
    }


def _measure_small_cohort(settings: Settings, task: Any, reference: GraphLoopReference,
                          folder: str, population: int) -> dict[str, Any]:
    """The runs at --memory_dp_cohort: client split, TFF stock, DP, compression, memory;
    and Flower's cohort when --flower is on."""
    cohort, warmup, rounds = settings.memory_dp_cohort, settings.warmup_rounds, settings.rounds
    # One FedAvg process at the memory/DP cohort for the split and stock runs.
    small = experiment_config(folder, clients_per_round=cohort)
    standard = builder.build(small, task)
    measured: dict[str, Any] = {
        "client_split": measure_client_split(standard, reference, cohort, warmup, rounds),
        "tff_stock": measure_tff_stock(task, standard, reference, small, warmup, rounds),
        "dp": measure_dp(task, folder, population, cohort, warmup, rounds),
        "compression": measure_compression(task, folder, cohort, warmup, rounds),
        "flower": (measure_flower(task, folder, settings) if settings.flower_python
                   else None),
        "memory": None,
    }
    if settings.memory_round_b:
        measured["memory"] = measure_memory(task, folder, cohort, settings.memory_round_a,
                                            settings.memory_round_b)
    return measured


def _settings_json(settings: Settings, base: Any) -> dict:
    """The result's "settings": what ran, with the client training's hyperparameters."""
    return {"task": TASK, "model": MODEL, "algorithm": base.algorithm,
            "client_batch_size": base.client_batch_size,
            "client_learning_rate": base.client_learning_rate,
            "client_epochs_per_round": base.client_epochs_per_round,
            "seed": SEED, "cohorts": list(settings.cohorts),
            "warmup_rounds": settings.warmup_rounds, "rounds": settings.rounds,
            "memory_round_a": settings.memory_round_a,
            "memory_round_b": settings.memory_round_b,
            "memory_dp_cohort": settings.memory_dp_cohort}


def _data_json(is_real: bool, summary: dict) -> dict:
    """The result's "data": which data, and its clients and examples."""
    population = summary["train_clients"]
    return {"name": data_name(is_real, population), "real": is_real,
            "file": summary["file"] if is_real else "synthetic (tasks.emnist_synthetic)",
            "train_clients": population, "train_examples": summary["train_examples"],
            "mean_examples_per_client": summary["train_examples"] / population}


def _result(cohorts: dict[str, Any], small: dict[str, Any], traces: int) -> dict:
    """The measurements in bench.json's order, each headline number beside its own."""
    overhead, split, stock = cohorts["overhead"], small["client_split"], small["tff_stock"]
    memory, dp, flower = small["memory"], small["dp"], small["flower"]
    return {
        "federated": cohorts["federated"],
        "centralized": cohorts["centralized"],
        "centralized_traces": traces,
        "ratio_to_centralized": cohorts["ratio_to_centralized"],
        "cpu_ratio_to_centralized": cohorts["cpu_ratio_to_centralized"],
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
        "compression": small["compression"],
        "compression_overhead_ratio": small["compression"]["overhead_ratio"],
        "flower": flower,
        "flower_round_seconds": None if flower is None else flower["flower_round_seconds"],
        "our_round_seconds_vs_flower": None if flower is None else flower["our_round_seconds"],
        "speedup_vs_flower": None if flower is None else flower["speedup_vs_flower"],
    }


def run(settings: Settings, progress: Callable[[str], None] = timing.progress) -> dict:
    """Runs every measurement in this process; returns the JSON-able result."""
    began = time.monotonic()
    ticks = machine.cpu_ticks()
    with data_folder(settings.data_dir) as (folder, is_real), tff_worker.session():
        base = experiment_config(folder)
        task = registry.get(base.task, base.task_config())
        summary = task.data_summary()
        population = summary["train_clients"]
        _check_cohorts_fit(settings, population, folder)
        mean_client = summary["train_examples"] / population
        info = machine.machine_info()
        progress(f"data: {data_name(is_real, population)} ({population} clients, "
                 f"{mean_client:.1f} train examples each on average)")
        reference = GraphLoopReference(base, task)
        cohorts = _measure_cohorts(settings, task, reference, folder, mean_client)
        small = _measure_small_cohort(settings, task, reference, folder, population)
    population = None
    if settings.populations:
        population = measure_populations(
            settings.populations, settings.population_cohorts, min(settings.warmup_rounds, 1),
            settings.population_rounds, settings.population_memory_max, progress)
    info["loadavg_at_end"] = list(os.getloadavg())
    info["cpu_steal_percent"] = machine.steal_percent(ticks, machine.cpu_ticks())
    return {"machine": info, "data": _data_json(is_real, summary),
            "settings": _settings_json(settings, base),
            **_result(cohorts, small, reference.traces()), "population": population,
            "wall_seconds": time.monotonic() - began}

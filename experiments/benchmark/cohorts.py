"""Federated rounds at each cohort size against the centralised loop, and the cost per client.

Each federated round is followed by the compiled centralised reference on
exactly that round's examples, so a round's ratio compares like with like
under the same machine load; the least-squares slope of round time against
cohort size, minus the centralised compute of one client, is the fixed
overhead every extra client adds.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from experiments.benchmark import machine, timing
from experiments.benchmark.configs import experiment_config
from experiments.benchmark.reference import GraphLoopReference
from experiments.benchmark.timing import median
from experiments.training.federated_trainer import FederatedTrainer


@dataclasses.dataclass
class _Rounds:
    """The measured rounds' numbers, federated and centralised, in round order."""

    fed_seconds: list[float] = dataclasses.field(default_factory=list)
    next_seconds: list[float] = dataclasses.field(default_factory=list)
    fed_examples: list[int] = dataclasses.field(default_factory=list)
    fed_cpu: list[float] = dataclasses.field(default_factory=list)
    ref_seconds: list[float] = dataclasses.field(default_factory=list)
    ref_build: list[float] = dataclasses.field(default_factory=list)
    ref_examples: list[int] = dataclasses.field(default_factory=list)
    ref_cpu: list[float] = dataclasses.field(default_factory=list)


def measure_cohort(task: Any, reference: GraphLoopReference, data_dir: str,
                   cohort: int, warmup: int, rounds: int) -> tuple[dict, dict]:
    """Federated rounds at one cohort size, each followed by the reference on its
    examples; returns (federated, centralized) result dicts."""
    trainer = FederatedTrainer(experiment_config(data_dir, clients_per_round=cohort), task)
    timed = timing.time_process_next(trainer)
    state = trainer.initial_state()
    measured = _Rounds()
    ticks = None
    for round_num in range(1, warmup + rounds + 1):
        if round_num == warmup + 1:
            ticks = machine.cpu_ticks()
        began, cpu_before = time.perf_counter(), machine.cpu_now()
        state, row = trainer.run_round(state, round_num)
        seconds, cpu_between = time.perf_counter() - began, machine.cpu_now()
        central, build, central_examples = reference.run(round_num, cohort)
        round_cpu, central_cpu = cpu_between - cpu_before, machine.cpu_now() - cpu_between
        is_measured = round_num > warmup
        timing.progress(f"cohort {cohort} round {round_num}/{warmup + rounds}"
                        f"{'' if is_measured else ' (warm-up)'}: federated {seconds:.2f} s, "
                        f"centralised {central:.2f} s, {row['train_examples']} examples")
        if not is_measured:
            continue
        measured.fed_seconds.append(seconds)
        measured.fed_examples.append(int(row["train_examples"]))
        if timed is not None:
            measured.next_seconds.append(timed.last_seconds)
        measured.ref_seconds.append(central)
        measured.ref_build.append(build)
        measured.ref_examples.append(central_examples)
        measured.fed_cpu.append(round_cpu)
        measured.ref_cpu.append(central_cpu)
    federated = _federated_result(measured, machine.steal_percent(ticks, machine.cpu_ticks()))
    return federated, _centralized_result(measured)


def _federated_result(m: _Rounds, steal: float | None) -> dict:
    """The federated side of one cohort's result (medians first, then every round)."""
    rate = [n / s for n, s in zip(m.fed_examples, m.fed_seconds, strict=True)]
    other = [f - n for f, n in zip(m.fed_seconds, m.next_seconds, strict=False)]
    return {
        "median_round_seconds": median(m.fed_seconds),
        "examples_per_second": median(rate),
        "median_examples_per_round": median([float(n) for n in m.fed_examples]),
        "median_process_next_seconds": median(m.next_seconds),
        "median_other_seconds": median(other),
        "cpu_steal_percent": steal,
        "round_seconds": m.fed_seconds,
        "round_examples": m.fed_examples,
        "process_next_seconds": m.next_seconds,
        "median_cpu_seconds": median(m.fed_cpu),
        "cpu_seconds": m.fed_cpu,
    }


def _centralized_result(m: _Rounds) -> dict:
    """The centralised side of one cohort's result, with its paired ratio to federated."""
    rate = [n / s for n, s in zip(m.ref_examples, m.ref_seconds, strict=True)]
    paired = [f / c for f, c in zip(m.fed_seconds, m.ref_seconds, strict=True)]
    return {
        "median_seconds": median(m.ref_seconds),
        "examples_per_second": median(rate),
        "median_build_seconds": median(m.ref_build),
        "seconds": m.ref_seconds,
        "build_seconds": m.ref_build,
        "examples": m.ref_examples,
        "same_examples_as_federated": m.ref_examples == m.fed_examples,
        "median_paired_ratio": median(paired),
        "median_cpu_seconds": median(m.ref_cpu),
        "cpu_seconds": m.ref_cpu,
    }


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

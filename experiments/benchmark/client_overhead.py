"""The fixed cost of a client with the compute held constant, and ours against TFF's stock.

Both measurements time several learning processes on the same round's client
datasets, interleaved with the compiled centralised loop on the same
examples, so every arm of a round sees the same data and machine load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from experiments.algorithms import builder
from experiments.benchmark import timing
from experiments.benchmark.reference import GraphLoopReference, balanced_concatenate
from experiments.benchmark.timing import median, paired_median
from experiments.core import stops


def interleaved(reference: GraphLoopReference, cohort: int, warmup: int, rounds: int,
                label: str, arms: dict[str, Callable[[list], Any]]) -> dict[str, list[float]]:
    """Seconds of each arm on each round's client datasets, then of the centralised
    loop on the same examples (key "centralized"); warm-up rounds are dropped."""
    times: dict[str, list[float]] = {name: [] for name in [*arms, "centralized"]}
    for round_num in range(1, warmup + rounds + 1):
        stops.raise_if_stop_requested()  # a stop swallowed by TF or a GC callback
        datasets = reference.client_datasets(round_num, cohort)
        measured = {name: timing.seconds(lambda f=arm, d=datasets: f(d))
                    for name, arm in arms.items()}
        measured["centralized"] = reference.run(round_num, cohort)[0]
        timing.progress(f"{label} round {round_num}/{warmup + rounds}: " + ", ".join(
            f"{name} {seconds:.2f} s" for name, seconds in measured.items()))
        if round_num > warmup:
            for name, seconds in measured.items():
                times[name].append(seconds)
    return times


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
    times = interleaved(reference, cohort, warmup, rounds, "client split", {
        "split": lambda d: standard.next(state, d),
        "one_client": lambda d: standard.next(state, [balanced_concatenate(list(d))]),
    })
    split, whole, central = times["split"], times["one_client"], times["centralized"]
    per_client = [(s - w) / (cohort - 1) * 1000 for s, w in zip(split, whole, strict=True)]
    return {
        "cohort": cohort,
        "median_split_seconds": median(split),
        "median_one_client_seconds": median(whole),
        "median_centralized_seconds": median(central),
        "fixed_overhead_ms_per_client": median(per_client),
        "one_client_over_centralized": paired_median(whole, central),
        "split_seconds": split, "one_client_seconds": whole, "centralized_seconds": central,
    }


def measure_tff_stock(task: Any, ours: Any, reference: GraphLoopReference, config: Any,
                      warmup: int, rounds: int) -> dict:
    """Our FedAvg process against TFF's stock one (same algorithm, TFF's client
    work) and the centralised loop, interleaved on each round's clients: what
    `experiments.algorithms.client_work` saves."""
    stock = builder.build_tff_stock(config, task)
    states = (ours.initialize(), stock.initialize())
    times = interleaved(reference, config.clients_per_round, warmup, rounds, "stock", {
        "ours": lambda d: ours.next(states[0], d),
        "tff_stock": lambda d: stock.next(states[1], d),
    })
    return {
        "cohort": config.clients_per_round,
        "median_seconds": {name: median(values) for name, values in times.items()},
        "ours_over_tff_stock": paired_median(times["ours"], times["tff_stock"]),
        "ours_ratio_to_centralized": paired_median(times["ours"], times["centralized"]),
        "tff_stock_ratio_to_centralized": paired_median(times["tff_stock"],
                                                        times["centralized"]),
        "seconds": times,
    }

"""What the measurements share: medians and ratios, timers, alternating rounds, progress.

Every timing is a median over rounds, and every comparison of two setups
runs their rounds interleaved, so both sides see the same machine load.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def progress(message: str) -> None:
    """Prints one `bench: ...` progress line on stderr (stdout holds the table)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float | None:
    """The median, or None for no values."""
    return float(np.median(values)) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None where either is missing or zero."""
    return None if not numerator or not denominator else numerator / denominator


def paired_median(numerators: list[float], denominators: list[float]) -> float | None:
    """The median of the round-by-round ratios (robust to a slow stretch of rounds)."""
    return median([n / d for n, d in zip(numerators, denominators, strict=True)])


def seconds(call: Callable[[], Any]) -> float:
    """Wall-clock seconds of `call()`."""
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


class TimedProcess:
    """Wraps a TFF learning process to time `next` alone (the rest of a round is
    sampling, client dataset construction and metric conversion)."""

    def __init__(self, process: Any):
        self._process = process
        self.last_seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._process, name)

    def next(self, state: Any, data: Any) -> Any:
        """The wrapped process's `next`, its seconds kept in `last_seconds`."""
        began = time.perf_counter()
        output = self._process.next(state, data)
        self.last_seconds = time.perf_counter() - began
        return output


def time_process_next(trainer: Any) -> TimedProcess | None:
    """Puts a timer around the trainer's builder.next, if it has the usual layout."""
    process = getattr(trainer, "_process", None)
    if process is None:
        return None
    timed = TimedProcess(process)
    trainer._process = timed
    return timed


def alternating_rounds(arms: dict[str, Any], warmup: int, rounds: int,
                       label: str) -> dict[str, list[float]]:
    """Round seconds of each trainer in `arms`, rounds interleaved ABBA.

    Odd rounds run the arms in the given order, even rounds in reverse, so
    neither side always runs on a machine the other has just warmed.

    Args:
      arms: name -> FederatedTrainer (two of them).
      warmup: rounds run first and not measured.
      rounds: measured rounds.
      label: names the run in the progress lines.

    Returns:
      name -> the seconds of each measured round.
    """
    states = {name: trainer.initial_state() for name, trainer in arms.items()}
    times: dict[str, list[float]] = {name: [] for name in arms}
    names = tuple(arms)
    for round_num in range(1, warmup + rounds + 1):
        for name in names if round_num % 2 else names[::-1]:
            began = time.perf_counter()
            states[name], _ = arms[name].run_round(states[name], round_num)
            if round_num > warmup:
                times[name].append(time.perf_counter() - began)
        progress(f"{label} round {round_num}/{warmup + rounds} done")
    return times

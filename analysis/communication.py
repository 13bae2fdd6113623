"""Upload cost of a run: cumulative bits, and the bits spent to reach an accuracy.

Read from metrics.csv (through `analysis.runs.load_run`): each round every
participating client uploads `bits_up_per_client`, so the round costs
bits_up_per_client x clients. `upload_to_reach` answers "how much did the
clients upload, in total, until the model first reached this test accuracy"
(the measure that compares compression methods at equal quality);
`compression_table` makes one row per run for the README / paper tables.
"""

from __future__ import annotations

import math
import os

import pandas as pd

from analysis import runs


def cumulative_upload_bits(metrics: pd.DataFrame) -> pd.Series:
    """Total bits uploaded by all clients up to and including each round."""
    per_round = metrics["bits_up_per_client"].astype(float) * metrics["clients"].astype(float)
    return per_round.cumsum()


def upload_to_reach(metrics: pd.DataFrame, target: float,
                    column: str = "test_accuracy") -> float:
    """Cumulative upload (bits) at the first eval round with `column` >= target;
    NaN if the run never reaches it."""
    cumulative = cumulative_upload_bits(metrics)
    reached = metrics[column].astype(float) >= target
    if not reached.any():
        return math.nan
    return float(cumulative[reached.idxmax()])


def rounds_to_reach(metrics: pd.DataFrame, target: float,
                    column: str = "test_accuracy") -> float:
    """The first round whose `column` is >= target; NaN if none."""
    reached = metrics[metrics[column].astype(float) >= target]
    return float(reached["round"].iloc[0]) if len(reached) else math.nan


def run_row(path: str, target: float | None = None) -> dict:
    """One run's communication summary: per-client upload, factor, final accuracy,
    and (given a target) the cumulative upload to reach it."""
    metrics = runs.load_run(path)
    evals = metrics.dropna(subset=["test_accuracy"])
    row = {"experiment": os.path.basename(path),
           "bits_up_per_client": float(metrics["bits_up_per_client"].mean()),
           "bits_down_per_client": float(metrics["bits_down_per_client"].mean()),
           "compression_factor": float(metrics["compression_factor"].mean()),
           "final_test_accuracy": float(evals["test_accuracy"].iloc[-1]) if len(evals)
           else math.nan,
           "cumulative_bits_up": float(cumulative_upload_bits(metrics).iloc[-1])}
    if target is not None:
        row["bits_up_to_target"] = upload_to_reach(metrics, target)
        row["rounds_to_target"] = rounds_to_reach(metrics, target)
    return row


def compression_table(paths: list[str], target: float | None = None) -> pd.DataFrame:
    """One row per run (see `run_row`)."""
    return pd.DataFrame([run_row(p, target) for p in paths])


def best_within(table: pd.DataFrame, baseline_accuracy: float,
                points: float = 0.01) -> pd.Series | None:
    """The row of largest compression factor whose final accuracy is within
    `points` (0.01 = one accuracy point) of the baseline's; None if no run is."""
    close = table[table["final_test_accuracy"] >= baseline_accuracy - points]
    if close.empty:
        return None
    return close.loc[close["compression_factor"].idxmax()]

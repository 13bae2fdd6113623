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


def run_row(path: str, target: float | None = None,
            column: str = "test_accuracy") -> dict:
    """One run's communication summary: per-client upload, factor, final `column`,
    and (given a target for `column`) the cumulative upload and rounds to reach it."""
    metrics = runs.load_run(path)
    evals = metrics.dropna(subset=[column])
    row = {"experiment": os.path.basename(path),
           "bits_up_per_client": float(metrics["bits_up_per_client"].mean()),
           "bits_down_per_client": float(metrics["bits_down_per_client"].mean()),
           "compression_factor": float(metrics["compression_factor"].mean()),
           f"final_{column}": float(evals[column].iloc[-1]) if len(evals) else math.nan,
           "cumulative_bits_up": float(cumulative_upload_bits(metrics).iloc[-1])}
    if target is not None:
        row["bits_up_to_target"] = upload_to_reach(metrics, target, column)
        row["rounds_to_target"] = rounds_to_reach(metrics, target, column)
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


def sweep_table(sweep: pd.DataFrame, metric: str = "test_accuracy",
                points: float = 0.01) -> tuple[pd.DataFrame, float]:
    """Per configuration of a compression sweep: upload per client, factor vs
    float32, final `metric`, the share of seeds that reach the target
    `uncompressed mean - points` and their mean cumulative upload (all clients)
    and rounds to reach it; returns the table and the target
    (NaN when the sweep has no uncompressed run, and then no upload-to-target).

    The configurations are those of `runs.aggregate_seeds` (seeds averaged).
    """
    uncompressed = (sweep[sweep["hp_compression"] == "none"] if "hp_compression" in sweep
                    else sweep.iloc[:0])
    target = (float(uncompressed[metric].astype(float).mean()) - points
              if len(uncompressed) else math.nan)
    per_run = []
    for path in sweep["path"]:
        row = run_row(path, None if math.isnan(target) else target, metric)
        bits = row.get("bits_up_to_target", math.nan)
        per_run.append({
            "compression_factor": row["compression_factor"],
            "reached_target": math.nan if math.isnan(target) else float(not math.isnan(bits)),
            "bits_up_to_target": bits,
            "rounds_to_target": row.get("rounds_to_target", math.nan)})
    sweep = pd.concat([sweep.reset_index(drop=True), pd.DataFrame(per_run)], axis=1)
    columns = ["upload_bits_per_client", "compression_factor", metric,
               "reached_target", "bits_up_to_target", "rounds_to_target"]
    table = runs.aggregate_seeds(sweep, columns)
    return table, target

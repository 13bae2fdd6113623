"""Runs and sweeps as pandas DataFrames, read only through experiments.results.

`load_run` gives one experiment's per-round table; `load_sweep` gives one row
per experiment under a root folder (its settings, final and best metrics,
epsilon, upload bytes, wall time); `aggregate_seeds` folds repeats that differ
only in --seed into mean, std and a 95% interval.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from experiments import results

_FINAL = ("test_accuracy", "test_loss", "fed_test_accuracy_mean", "fed_test_accuracy_p10",
          "fed_test_accuracy_p50", "fed_test_accuracy_p90", "naive_accuracy",
          "epsilon_rdp", "epsilon_pld")


def load_run(path: str) -> pd.DataFrame:
    """One experiment's metrics.csv, one row per round."""
    return results.load_metrics(path)


def _summary_row(path: str) -> dict:
    metrics = load_run(path)
    config = results.load_hparams(path).get("config", {})
    evals = metrics.dropna(subset=["test_accuracy"])
    last = evals.iloc[-1] if len(evals) else None
    row = {"experiment": os.path.basename(path), "path": path,
           "complete": results.load_summary(path) is not None,
           "rounds": int(metrics["round"].max()) if len(metrics) else 0,
           "wall_seconds": float(metrics["round_seconds"].sum()
                                 + metrics["eval_seconds"].fillna(0).sum()),
           "upload_bytes_total": float((metrics["bytes_up_per_client"]
                                        * metrics["clients"]).sum()),
           "best_test_accuracy": float(evals["test_accuracy"].max()) if len(evals) else
           math.nan}
    for column in _FINAL:
        series = metrics[column].dropna() if column in metrics else pd.Series(dtype=float)
        if column.startswith("epsilon"):
            row[column] = float(series.iloc[-1]) if len(series) else math.nan
        else:
            row[column] = float(last[column]) if last is not None else math.nan
    row.update({f"hp_{k}": v for k, v in config.items()})
    return row


def load_sweep(root: str) -> pd.DataFrame:
    """One row per experiment folder directly under `root` (hparams as hp_* columns)."""
    folders = sorted(os.path.join(root, name) for name in os.listdir(root)
                     if os.path.exists(os.path.join(root, name, results.HPARAMS))
                     and ".replaced-" not in name)
    return pd.DataFrame([_summary_row(f) for f in folders])


def aggregate_seeds(sweep: pd.DataFrame, metric: str = "test_accuracy") -> pd.DataFrame:
    """Groups trials equal in every hp_* setting but the seed: mean, std, 95% interval."""
    keys = [c for c in sweep.columns if c.startswith("hp_")
            and c not in ("hp_seed", "hp_experiment_name", "hp_root_output_dir")]
    grouped = sweep.groupby(keys, dropna=False)[metric]
    table = grouped.agg(["mean", "std", "count"]).reset_index()
    half = 1.96 * table["std"].fillna(0.0) / np.sqrt(table["count"])
    table["ci95_low"], table["ci95_high"] = table["mean"] - half, table["mean"] + half
    return table.rename(columns={"mean": f"{metric}_mean", "std": f"{metric}_std",
                                 "count": "seeds"})

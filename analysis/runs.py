"""Runs and sweeps as pandas DataFrames, read only through experiments.core.results.

`load_run` gives one experiment's per-round table; `load_sweep` gives one row
per experiment under a root folder: its settings (`hp_*`), the final value of
every eval metric the task wrote (`test_*`, `fed_test_*`, `naive_*`) and the
best one (`best_test_*`), epsilon, the data it saw (population, fractions),
upload and wall time. `aggregate_seeds` folds repeats that differ only in
--seed into mean, std and a 95% Student-t interval; `seed_curves` does the same
round by round (learning curves with bands). Everything is metric-generic, so
regression tasks (`test_rmse`, lower is better) work like classification.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from experiments.core import results

# Settings that never distinguish configurations (names, places, seeds, UI).
_NOT_SETTINGS = ("hp_seed", "hp_experiment_name", "hp_root_output_dir", "hp_data_dir",
                 "hp_overwrite", "hp_progress")
# Substrings of metric names for which smaller is better.
_LOWER_IS_BETTER = ("loss", "rmse", "mse", "mae", "error", "perplexity")
_EVAL_PREFIXES = ("test_", "fed_test_", "naive_")
# epsilon, and what it is of: delta, and the population and cohort accounted (a
# simulated deployment's with --simulated_population).
_PRIVACY = ("epsilon_rdp", "epsilon_pld", "dp_delta", "accounted_population",
            "accounted_cohort")


def lower_is_better(metric: str) -> bool:
    """True for losses and errors (rmse, mae, ...), False for accuracies."""
    return any(part in metric for part in _LOWER_IS_BETTER)


def load_run(path: str) -> pd.DataFrame:
    """One experiment's metrics.csv, one row per round."""
    return results.load_metrics(path)


def _last(series: pd.Series) -> float:
    series = series.dropna()
    return float(series.iloc[-1]) if len(series) else math.nan


def _upload(metrics: pd.DataFrame) -> dict[str, float]:
    """Upload per client per round (bits: exact if written, else 8 x bytes) and in total."""
    bytes_up = metrics["bytes_up_per_client"].astype(float)
    if "bits_up_per_client" in metrics and metrics["bits_up_per_client"].notna().any():
        bits = metrics["bits_up_per_client"].astype(float)
    else:
        bits = 8.0 * bytes_up
    return {"upload_bytes_total": float((bytes_up * metrics["clients"]).sum()),
            "upload_bits_per_client": float(bits.mean()) if len(bits) else math.nan,
            "upload_bits_total": float((bits * metrics["clients"]).sum())}


def _data(metrics: pd.DataFrame, config: dict, data: dict) -> dict[str, float | str]:
    """The data set (as the task names it from the file), the population and the share
    of it (clients, examples) one round sees."""
    population = float(data.get("train_clients", math.nan))
    examples = float(data.get("train_examples", math.nan))
    per_round = float(metrics["train_examples"].mean()) if len(metrics) else math.nan
    cohort = float(config.get("clients_per_round", math.nan))
    return {"data": str(data.get("description", "")),
            "population": population, "examples_per_round": per_round,
            "population_fraction": cohort / population if population else math.nan,
            "examples_fraction": per_round / examples if examples else math.nan}


def _wall_seconds(hparams: dict, metrics: pd.DataFrame) -> float:
    """The run's wall time: its sessions' (start-up, data, training, evaluation and
    checkpoints); runs written before sessions were recorded: rounds plus evals."""
    sessions = hparams.get("sessions")
    if sessions:
        return float(sum(s.get("seconds") or 0.0 for s in sessions))
    return float(metrics["round_seconds"].sum() + metrics["eval_seconds"].fillna(0).sum())


def _summary_row(path: str) -> dict:
    metrics = load_run(path)
    hparams = results.load_hparams(path)
    config = hparams.get("config", {})
    eval_columns = [c for c in metrics.columns if c.startswith(_EVAL_PREFIXES)]
    primary = next((c for c in eval_columns if c.startswith("test_") and c != "test_loss"),
                   "test_loss")
    evals = metrics.dropna(subset=[primary]) if primary in metrics else metrics.iloc[:0]
    last = evals.iloc[-1] if len(evals) else None
    row = {"experiment": os.path.basename(path), "path": path,
           "complete": results.load_summary(path) is not None,
           "rounds": int(metrics["round"].max()) if len(metrics) else 0,
           "eval_rounds": len(evals),
           "wall_seconds": _wall_seconds(hparams, metrics)}
    for column in eval_columns:
        row[column] = float(last[column]) if last is not None else math.nan
        if column.startswith("test_") and len(evals):
            best = evals[column].min() if lower_is_better(column) else evals[column].max()
            row[f"best_{column}"] = float(best)
    for column in _PRIVACY:
        row[column] = _last(metrics[column]) if column in metrics else math.nan
    row.update(_upload(metrics))
    row.update(_data(metrics, config, hparams.get("data", {})))
    row.update({f"hp_{k}": v for k, v in config.items()})
    return row


def load_sweep(root: str) -> pd.DataFrame:
    """One row per experiment folder directly under `root` (hparams as hp_* columns)."""
    folders = sorted(os.path.join(root, name) for name in os.listdir(root)
                     if os.path.exists(os.path.join(root, name, results.HPARAMS))
                     and ".replaced-" not in name)
    return pd.DataFrame([_summary_row(f) for f in folders])


def setting_keys(sweep: pd.DataFrame) -> list[str]:
    """The hp_* columns that define a configuration (all but seed, names, paths)."""
    return [c for c in sweep.columns if c.startswith("hp_") and c not in _NOT_SETTINGS]


def varied_keys(sweep: pd.DataFrame) -> list[str]:
    """The settings that take more than one recorded value in this sweep (seed excluded).

    A setting missing from some runs (added to the code after they started) had
    its default there, so missing values do not make a setting varied.
    """
    return [c for c in setting_keys(sweep) if sweep[c].nunique(dropna=True) > 1]


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval for the mean; NaN bounds for one value."""

    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def _stats(values: pd.Series, prefix: str) -> dict[str, float]:
    mean, low, high = t_interval(values.to_numpy())
    std = float(values.std(ddof=1)) if values.notna().sum() > 1 else math.nan
    return {f"{prefix}_mean": mean, f"{prefix}_std": std, f"{prefix}_ci95_low": low,
            f"{prefix}_ci95_high": high}


def aggregate_seeds(sweep: pd.DataFrame,
                    metrics: str | Sequence[str] = "test_accuracy") -> pd.DataFrame:
    """One row per configuration (runs differing only in the seed): mean, std, 95% t-CI.

    Configurations are told apart by the varied settings (`varied_keys`).
    Columns: those settings, `seeds` (how many runs), and for each metric m:
    m_mean, m_std, m_ci95_low, m_ci95_high.
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    keys = varied_keys(sweep)
    rows = []
    groups = sweep.groupby(keys, dropna=False, sort=True) if keys else [((), sweep)]
    for values, group in groups:
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
        row["seeds"] = len(group)
        for metric in names:
            row.update(_stats(group[metric].astype(float), metric))
        rows.append(row)
    return pd.DataFrame(rows)


def seed_curves(sweep: pd.DataFrame, metric: str = "test_accuracy") -> pd.DataFrame:
    """Per configuration and round: mean, std and 95% t-interval of `metric` over seeds.

    Columns: the varied settings, `round`, `seeds`, mean, std, ci95_low, ci95_high.
    """
    keys = varied_keys(sweep)
    frames = []
    for _, trial in sweep.iterrows():
        run = load_run(trial["path"])
        if metric not in run:
            continue
        run = run.dropna(subset=[metric])[["round", metric]]
        for key in keys:
            run[key] = trial[key]
        frames.append(run)
    if not frames:
        return pd.DataFrame(columns=[*keys, "round", "seeds", "mean", "std", "ci95_low",
                                     "ci95_high"])
    table = pd.concat(frames, ignore_index=True)
    rows = []
    for values, group in table.groupby([*keys, "round"], dropna=False, sort=True):
        row = dict(zip([*keys, "round"], values, strict=True))
        stats = _stats(group[metric].astype(float), "x")
        row.update(seeds=len(group), mean=stats["x_mean"], std=stats["x_std"],
                   ci95_low=stats["x_ci95_low"], ci95_high=stats["x_ci95_high"])
        rows.append(row)
    return pd.DataFrame(rows)

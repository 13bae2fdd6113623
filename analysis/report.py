"""Writes a sweep's report: `./run.sh report DIR` -> DIR/report.md + DIR/plots/*.png.

    python -m analysis.report results/femnist_dp [--metric=test_accuracy]

The report has one table row per configuration (settings varied in the sweep,
seeds, epsilon, the metric's mean with its 95% Student-t interval over seeds,
best value, upload per client, wall time) and the plots that the sweep can
support: accuracy vs epsilon (if it has finite epsilons), accuracy and epsilon
vs clients per round (if the cohort size varies), accuracy vs the fraction of
examples seen per round, accuracy vs upload bits (if upload varies) and the
learning curves with bands over seeds. Everything comes from analysis.runs.
"""

from __future__ import annotations

import dataclasses
import math
import os

import pandas as pd
from absl import flags

from analysis import communication, plots, render, runs
from experiments import config as config_lib
from experiments.core import binary, results, stops
from experiments.core.errors import UsageError

REPORT = "report.md"
PLOTS_DIR = "plots"

_FLAGS = flags.FLAGS
if "metric" not in _FLAGS:  # analysis.notebook_runner defines it too (one test process)
    flags.DEFINE_string("metric", "", "Metric column to report (default: test_accuracy, "
                        "else the task's first test_* metric).")


@dataclasses.dataclass(frozen=True)
class Report:
    """What `write` produced: the markdown file, the table and the plots."""

    path: str
    table: pd.DataFrame
    plots: list[plots.Plot]


def primary_metric(sweep: pd.DataFrame) -> str:
    """test_accuracy if present, else the first test_* column that is not the loss."""
    if "test_accuracy" in sweep:
        return "test_accuracy"
    candidates = [c for c in sweep.columns if c.startswith("test_") and c != "test_loss"]
    return candidates[0] if candidates else "test_loss"


def load(folder: str) -> pd.DataFrame:
    """The sweep's trials; a UsageError naming the folder if there are none."""
    if not os.path.isdir(folder):
        raise UsageError(f"{folder}: no such folder; give a sweep's output folder "
                         f"(<root_output_dir>/<sweep name>)")
    sweep = runs.load_sweep(folder)
    if sweep.empty:
        raise UsageError(f"{folder}: holds no experiment folders (no */hparams.json); "
                         f"give a sweep's output folder")
    return sweep


def naive_metric(metric: str) -> str:
    """The naive predictor's column for a test metric (test_accuracy -> naive_accuracy)."""
    return "naive_" + metric.removeprefix("test_")


def at_chance(mean: float, naive: float, metric: str) -> bool:
    """Whether a result is no better than the naive predictor on the same data."""
    if not (math.isfinite(mean) and math.isfinite(naive)):
        return False
    return mean >= naive if runs.lower_is_better(metric) else mean <= naive


def summary_table(sweep: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per configuration: settings, seeds, epsilon, metric mean and interval,
    and the naive predictor's score on the same data."""
    columns = [metric, naive_metric(metric), f"best_{metric}", "epsilon_rdp", "epsilon_pld",
               "dp_delta",
               "accounted_population", "accounted_cohort",
               "upload_bits_per_client", "wall_seconds", "rounds"]
    present = [c for c in columns if c in sweep]
    table = runs.aggregate_seeds(sweep, present)
    keys = runs.varied_keys(sweep)
    return table[keys + ["seeds"] + [c for c in table.columns
                                     if c not in keys and c != "seeds"
                                     and not c.startswith("hp_")]]


def _table_text(table: pd.DataFrame, sweep: pd.DataFrame, metric: str) -> str:
    keys = runs.varied_keys(sweep)
    headers = [k.removeprefix("hp_") for k in keys] + [
        "seeds", "epsilon (RDP)", "delta", "accounted cohort / population",
        f"{metric} (mean [95% CI])", f"naive {metric.removeprefix('test_')}",
        f"best {metric}", "upload bits/client/round", "wall s", "rounds"]
    rows = []
    for _, row in table.iterrows():
        mean = row[f"{metric}_mean"]
        naive = row.get(f"{naive_metric(metric)}_mean", math.nan)
        chance = " (at chance)" if at_chance(mean, naive, metric) else ""
        cells = [render.setting(row[k]) for k in keys]
        cells += [str(int(row["seeds"])),
                  _epsilon_text(row),
                  _delta_text(row.get("dp_delta_mean", math.nan)),
                  _accounted_text(row),
                  render.interval(mean, row[f"{metric}_ci95_low"],
                                  row[f"{metric}_ci95_high"]) + chance,
                  render.number(naive),
                  render.number(row.get(f"best_{metric}_mean", math.nan)),
                  render.number(row.get("upload_bits_per_client_mean", math.nan), 0),
                  render.number(row.get("wall_seconds_mean", math.nan), 0),
                  render.number(row.get("rounds_mean", math.nan), 0)]
        rows.append(cells)
    right = [False] * len(keys) + [True] * 10
    return render.markdown(headers, rows, right)


def _epsilon_text(row: pd.Series) -> str:
    """epsilon, or `inf (no DP)` for a run without noise, which is never left out."""
    epsilon = row.get("epsilon_rdp_mean", math.nan)
    if math.isinf(epsilon) or (math.isnan(epsilon) and math.isnan(
            row.get("dp_delta_mean", math.nan))):
        return "inf (no DP)"
    return render.number(epsilon, 2)


def _delta_text(delta: float) -> str:
    return "-" if math.isnan(delta) else f"{delta:.2g}"  # NaN: no DP


def _accounted_text(row: pd.Series) -> str:
    """`1,000 / 1,000,000`: the cohort and population the epsilon is of (- without DP)."""
    cohort = row.get("accounted_cohort_mean", math.nan)
    population = row.get("accounted_population_mean", math.nan)
    if not (cohort == cohort and population == population):
        return "-"
    return f"{int(cohort):,} / {int(population):,}"


def communication_text(sweep: pd.DataFrame, metric: str) -> list[str]:
    """The compression section: factor, final metric and upload to reach the
    uncompressed result minus one point, per configuration (empty if the sweep
    does not vary --compression)."""
    keys = runs.varied_keys(sweep)
    if "hp_compression" not in keys:
        return []
    table, target = communication.sweep_table(sweep, metric)
    headers = [k.removeprefix("hp_") for k in keys] + [
        "seeds", "upload bits/client/round", "factor vs float32", metric,
        "seeds reaching target", "total upload to target (Mbit)", "rounds to target"]
    def cell(row: pd.Series, key: str) -> str:
        methods = config_lib.COMPRESSION_SETTINGS.get(key.removeprefix("hp_"))
        return ("" if methods and row["hp_compression"] not in methods
                else render.setting(row[key]))

    rows = []
    for _, row in table.iterrows():
        reached = row["reached_target_mean"]
        rows.append([cell(row, k) for k in keys] + [
            str(int(row["seeds"])), render.number(row["upload_bits_per_client_mean"], 0),
            render.number(row["compression_factor_mean"], 1),
            render.number(row[f"{metric}_mean"]),
            "-" if math.isnan(reached) else f"{round(reached * row['seeds'])}/{int(row['seeds'])}",
            render.number(row["bits_up_to_target_mean"] / 1e6, 0),
            render.number(row["rounds_to_target_mean"], 0)])
    lines = ["## Communication", "",
             render.markdown(headers, rows, [False] * len(keys) + [True] * 7), ""]
    if math.isnan(target):
        return lines + ["No uncompressed run (compression=none): no target.", ""]
    close = table[table[f"{metric}_mean"] >= target]
    lines.append(f"Target: uncompressed mean `{metric}` minus one point = {target:.3f}.")
    if close.empty:
        lines.append("No compressed configuration is within one point of uncompressed.")
    else:
        best = close.loc[close["compression_factor_mean"].idxmax()]
        cells = {k.removeprefix("hp_"): cell(best, k) for k in keys}
        setting = ", ".join(f"{k}={v}" for k, v in cells.items() if v)
        lines.append(f"Largest factor within one point: {setting}: "
                     f"{best['compression_factor_mean']:.1f}x less upload per client, "
                     f"`{metric}` {best[f'{metric}_mean']:.3f}.")
    return lines + [""]


def plot_references(sweep: pd.DataFrame, metric: str) -> dict[str, float]:
    """The lines every plot of the metric is read against: the naive predictor on the
    same data and, where the sweep has one, the centralised model (the upper bound)."""
    found = {}
    naive = naive_metric(metric)
    if naive in sweep and sweep[naive].notna().any():
        found["naive baseline"] = float(sweep[naive].mean())
    central = sweep[sweep.get("hp_algorithm", pd.Series("", index=sweep.index))
                    == "centralized"]
    if len(central) and central[metric].notna().any():
        found["centralised"] = float(central[metric].mean())
    return found


def plot_subtitle(sweep: pd.DataFrame) -> str:
    """Data set, rounds and the DP settings every run shares, for each plot."""
    parts = [_data_line(sweep)]
    rounds = sweep["rounds"].dropna().unique() if "rounds" in sweep else []
    if len(rounds):
        parts.append("rounds " + ", ".join(str(int(r)) for r in sorted(rounds)))
    varied = runs.varied_keys(sweep)
    for key, name in (("hp_clip", "clip"), ("dp_delta", "delta")):
        if key in sweep and key not in varied and sweep[key].notna().any() and (
                sweep.get("hp_dp", pd.Series("none")) != "none").any():
            value = sweep[key].dropna().iloc[0]
            parts.append(f"{name} {value:.3g}")
    return "; ".join(p for p in parts if p)


def make_plots(sweep: pd.DataFrame, folder: str, metric: str) -> list[plots.Plot]:
    """The plots this sweep supports, written to folder/plots/, each with the naive
    baseline (and the centralised bound where there is one) and a subtitle."""
    out = os.path.join(folder, PLOTS_DIR)
    varied = runs.varied_keys(sweep)
    refs, subtitle = plot_references(sweep, metric), plot_subtitle(sweep)
    made = []
    has_epsilon = "epsilon_rdp" in sweep and plots.epsilon_axis(sweep["epsilon_rdp"])
    if has_epsilon:
        made.append(plots.accuracy_vs_epsilon(
            sweep, os.path.join(out, "accuracy_vs_epsilon.png"), metric, references=refs,
            subtitle=subtitle))
    if "hp_clients_per_round" in varied:
        made.append(plots.accuracy_vs_clients(
            sweep, os.path.join(out, "accuracy_vs_clients.png"), metric, references=refs,
            subtitle=subtitle))
        if has_epsilon:
            made.append(plots.epsilon_vs_clients(
                sweep, os.path.join(out, "epsilon_vs_clients.png")))
    elif plots.finite(sweep["examples_fraction"]):  # with the cohort varied, a copy of it
        made.append(plots.accuracy_vs_examples(
            sweep, os.path.join(out, "accuracy_vs_examples.png"), metric, references=refs,
            subtitle=subtitle))
    if plots.finite(sweep["upload_bits_per_client"]):
        made.append(plots.accuracy_vs_upload(
            sweep, os.path.join(out, "accuracy_vs_upload.png"), metric, references=refs,
            subtitle=subtitle))
    made.append(plots.learning_curves(sweep, os.path.join(out, "learning_curves.png"),
                                      metric, references=refs, subtitle=subtitle))
    return made


def _simulated_note(sweep: pd.DataFrame) -> str:
    """Where epsilon is a simulated deployment's, say so (it is not the trained one's)."""
    simulated = sweep.get("hp_simulated_population")
    if simulated is None or not (simulated.fillna(0) > 0).any():
        return ""
    return (" (where that population is larger than the one trained on, epsilon is that "
            "of the simulated deployment: --simulated_population, --noise_cohort_size)")


def _data_line(sweep: pd.DataFrame) -> str:
    parts = []
    named = sorted({str(d) for d in sweep.get("data", pd.Series(dtype=str)).dropna() if d})
    if named:  # as the task names the file it read (FEMNIST-300, not "EMNIST")
        parts.append("data " + "; ".join(named))
    elif "hp_task" in sweep:
        parts.append("task " + ", ".join(sorted(map(str, sweep["hp_task"].unique()))))
    population = sweep["population"].dropna().unique()
    if len(population):
        parts.append("population " + ", ".join(f"{int(p):,}" for p in population)
                     + " training clients")
    return "; ".join(parts)


def write(folder: str, metric: str = "") -> Report:
    """Loads the sweep in `folder` and writes folder/report.md and its plots."""
    sweep = load(folder)
    metric = metric or primary_metric(sweep)
    if metric not in sweep:
        valid = sorted(c for c in sweep.columns if c.startswith("test_"))
        raise UsageError(f"--metric={metric}: not written by these runs; valid: "
                         f"{', '.join(valid)}")
    unfinished = sorted(sweep.loc[~sweep["complete"], "experiment"])
    if len(unfinished) < len(sweep):
        sweep = sweep[sweep["complete"]].reset_index(drop=True)
    table = summary_table(sweep, metric)
    made = make_plots(sweep, folder, metric)
    name = os.path.basename(os.path.abspath(folder))
    lines = [f"# Sweep report: {name}", "",
             f"{len(sweep)} completed runs in {len(table)} configurations; "
             f"{_data_line(sweep)}. Settings varied: "
             f"{', '.join(k.removeprefix('hp_') for k in runs.varied_keys(sweep)) or 'none'}."
             f" Final-round `{metric}` (mean over seeds, 95% Student-t interval); epsilon "
             f"after the last round (RDP) at the delta beside it, for rounds sampling the "
             f"accounted cohort from the accounted population{_simulated_note(sweep)}.", "",
             _table_text(table, sweep, metric), ""]
    lines += communication_text(sweep, metric)
    if unfinished:
        lines += [f"Not complete, left out: {', '.join(f'`{n}`' for n in unfinished)}.", ""]
    for plot in made:
        rel = os.path.relpath(plot.path, folder)
        lines += [f"## {plot.title}", "", f"![{plot.title}]({rel})", ""]
    path = os.path.join(folder, REPORT)
    results.atomic_write(path, "\n".join(lines).encode())
    return Report(path, table, made)


def _report(args: list[str]) -> None:
    report = write(args[0], _FLAGS.metric)
    print(f"report: {report.path} ({len(report.table)} configurations, "
          f"{len(report.plots)} plots)")


if __name__ == "__main__":
    binary.run_with_arguments(
        "report", _report, "give exactly one sweep folder: ./run.sh report DIR "
        "[--metric=NAME]", 1, interrupted=stops.NOTHING_WRITTEN)

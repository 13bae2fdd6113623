"""Trade-off plots and learning curves of a sweep, as PNG files (matplotlib, Agg).

Every function takes `runs.load_sweep(...)` output, writes one PNG and returns
a `Plot`: the file and, per line, the exact data drawn (x, y mean, 95% t-interval
over seeds), so tests and notebooks can check what a figure shows.

Lines: the points of one line differ in the setting that moves along the x
axis (`along`); every other setting varied in the sweep makes its own line
(e.g. accuracy vs epsilon: one line per cohort size, its points the noise
levels). Error bars / bands are 95% Student-t intervals over seeds.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis import runs  # noqa: E402

_DPI = 110
_SIZE = (6.4, 4.4)
_MARKERS_UP_TO = 20  # points per line drawn with markers (fewer points: easy to misread)
NO_DP = "no DP (epsilon = inf)"


@dataclasses.dataclass(frozen=True)
class Plot:
    """A written figure and the data of each of its lines (label -> DataFrame)."""

    path: str
    title: str
    series: dict[str, pd.DataFrame]


def label_of(key: str) -> str:
    """A readable axis / legend name for a column ('hp_clients_per_round' -> ...)."""
    names = {"epsilon_rdp": "epsilon (RDP)", "epsilon_pld": "epsilon (PLD)",
             "upload_bits_per_client": "upload bits per client per round",
             "examples_fraction": "fraction of training examples per round",
             "population_fraction": "fraction of clients per round"}
    return names.get(key, key.removeprefix("hp_").replace("_", " "))


def _series_label(keys: list[str], values: tuple) -> str:
    if not keys:
        return "all"
    return ", ".join(f"{k.removeprefix('hp_')}={v:g}" if isinstance(v, float)
                     else f"{k.removeprefix('hp_')}={v}" for k, v in zip(keys, values,
                                                                        strict=True))


def tradeoff_series(sweep: pd.DataFrame, x: str, y: str, along: str | None = None
                    ) -> dict[str, pd.DataFrame]:
    """Per line: x (mean over seeds), y mean and 95% interval, seeds; sorted by x.

    `along` is the setting whose values make the points of a line (default: x
    itself when it is a setting); the other varied settings split the lines.
    Points whose x is not finite (e.g. epsilon of a noiseless run) are dropped.
    """
    along = along or (x if x.startswith("hp_") else None)
    table = runs.aggregate_seeds(sweep, [x, y] if x != y else [y])
    split = [k for k in runs.varied_keys(sweep) if k != along]
    out: dict[str, pd.DataFrame] = {}
    groups = table.groupby(split, dropna=False, sort=True) if split else [((), table)]
    for values, group in groups:
        values = values if isinstance(values, tuple) else (values,)
        frame = pd.DataFrame({"x": group[f"{x}_mean"].to_numpy(float),
                              "y": group[f"{y}_mean"].to_numpy(float),
                              "low": group[f"{y}_ci95_low"].to_numpy(float),
                              "high": group[f"{y}_ci95_high"].to_numpy(float),
                              "seeds": group["seeds"].to_numpy(int)})
        frame = frame[np.isfinite(frame["x"]) & np.isfinite(frame["y"])]
        if len(frame):
            out[_series_label(split, values)] = frame.sort_values("x").reset_index(
                drop=True)
    return out


def _save(fig: plt.Figure, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=_DPI)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def _errors(frame: pd.DataFrame) -> np.ndarray | None:
    if frame["low"].isna().all():
        return None
    low = (frame["y"] - frame["low"]).fillna(0.0).clip(lower=0.0)
    high = (frame["high"] - frame["y"]).fillna(0.0).clip(lower=0.0)
    return np.vstack([low.to_numpy(), high.to_numpy()])


def _title(ax: plt.Axes, title: str, subtitle: str) -> None:
    text = "\n".join(textwrap.wrap(title, 64))
    if subtitle:
        text += "\n" + "\n".join(textwrap.wrap(subtitle, 90))
    ax.set_title(text, fontsize=10 if not subtitle else 8)


def _references(ax: plt.Axes, references: dict[str, float] | None) -> None:
    """Horizontal dashed lines (the naive baseline, a centralised bound)."""
    styles = itertools.cycle(("--", ":", "-.", (0, (5, 1)), (0, (1, 3))))
    for (label, value), style in zip((references or {}).items(), styles, strict=False):
        if math.isfinite(value):
            ax.axhline(value, color="grey", linestyle=style, label=f"{label} ({value:.3g})")


def tradeoff(sweep: pd.DataFrame, x: str, y: str, path: str, along: str | None = None,
             title: str = "", logx: bool = False, logy: bool = False,
             references: dict[str, float] | None = None, subtitle: str = "",
             vertical: dict[str, float] | None = None) -> Plot:
    """One line per configuration family: y against x with 95% error bars.

    `references` (label -> y, e.g. the non-DP result and the naive baseline) are
    drawn as horizontal dashed lines, so every point is read against them;
    `vertical` (label -> x) as dotted vertical lines (where epsilon = inf is drawn);
    `subtitle` names the data, rounds and fixed settings.
    """
    series = tradeoff_series(sweep, x, y, along)
    fig, ax = plt.subplots(figsize=_SIZE)
    for label, frame in series.items():
        ax.errorbar(frame["x"], frame["y"], yerr=_errors(frame), marker="o", capsize=3,
                    label=label)
    _references(ax, references)
    for label, value in (vertical or {}).items():
        ax.axvline(value, color="black", linestyle=":", linewidth=0.8, label=label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(label_of(x))
    ax.set_ylabel(label_of(y))
    title = title or f"{label_of(y)} vs {label_of(x)}"
    _title(ax, title, subtitle)
    if x.startswith("hp_") and pd.api.types.is_integer_dtype(sweep[x]):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3, which="both")
    if (series and list(series) != ["all"]) or references or vertical:
        ax.legend(fontsize=7)
    if not series:
        ax.text(0.5, 0.5, "no finite points", transform=ax.transAxes, ha="center")
    _save(fig, path)
    return Plot(path, title, series)


def accuracy_vs_epsilon(sweep: pd.DataFrame, path: str, metric: str = "test_accuracy",
                        epsilon: str = "epsilon_rdp",
                        references: dict[str, float] | None = None,
                        subtitle: str = "") -> Plot:
    """Privacy / utility: the metric against epsilon (log), one line per cohort etc.

    Runs without DP (or with noise 0: epsilon = inf) are never dropped: they are
    drawn at the right edge, past every finite epsilon, on a dotted line marked
    as such.
    """
    values = sweep[epsilon].astype(float)
    no_dp = ~np.isfinite(values)  # inf (noise 0) or never written (no --dp)
    finite = values[~no_dp]
    edge = float(finite.max()) * 4 if len(finite) else 1.0
    placed = sweep.assign(**{epsilon: values.where(~no_dp, edge)})
    edges = {NO_DP: edge} if no_dp.any() else {}
    return tradeoff(placed, epsilon, metric, path, along="hp_noise_multiplier",
                    title=f"{label_of(metric)} vs {label_of(epsilon)}", logx=True,
                    references=references, subtitle=subtitle, vertical=edges)


def accuracy_vs_clients(sweep: pd.DataFrame, path: str, metric: str = "test_accuracy",
                        **options) -> Plot:
    """Data: the metric against clients per round, one line per noise level etc.
    (`options`: `tradeoff`'s references and subtitle)."""
    return tradeoff(sweep, "hp_clients_per_round", metric, path, **options)


def accuracy_vs_examples(sweep: pd.DataFrame, path: str, metric: str = "test_accuracy",
                         **options) -> Plot:
    """Data: the metric against the fraction of training examples one round sees."""
    along = "hp_clients_per_round" if "hp_clients_per_round" in runs.varied_keys(
        sweep) else None
    return tradeoff(sweep, "examples_fraction", metric, path, along=along, **options)


def epsilon_vs_clients(sweep: pd.DataFrame, path: str, epsilon: str = "epsilon_rdp"
                       ) -> Plot:
    """Privacy / data: epsilon against clients per round, one line per noise level."""
    return tradeoff(sweep, "hp_clients_per_round", epsilon, path,
                    title=f"{label_of(epsilon)} vs clients per round (fixed noise)",
                    logy=True)


def accuracy_vs_upload(sweep: pd.DataFrame, path: str, metric: str = "test_accuracy",
                       along: str | None = None, **options) -> Plot:
    """Communication: the metric against upload bits per client per round (log)."""
    return tradeoff(sweep, "upload_bits_per_client", metric, path, along=along, logx=True,
                    **options)


def learning_curves(sweep: pd.DataFrame, path: str, metric: str = "test_accuracy",
                    references: dict[str, float] | None = None, subtitle: str = "") -> Plot:
    """The metric per round, one line per configuration; a band (95% interval over
    seeds) only where a line has two seeds or more, and the title says how many."""
    curves = runs.seed_curves(sweep, metric)
    keys = [c for c in curves.columns if c.startswith("hp_")]
    fig, ax = plt.subplots(figsize=_SIZE)
    series: dict[str, pd.DataFrame] = {}
    groups = curves.groupby(keys, dropna=False, sort=True) if keys else [((), curves)]
    for values, group in groups:
        values = values if isinstance(values, tuple) else (values,)
        label = _series_label(keys, values)
        frame = pd.DataFrame({"x": group["round"].to_numpy(float),
                              "y": group["mean"].to_numpy(float),
                              "low": group["ci95_low"].to_numpy(float),
                              "high": group["ci95_high"].to_numpy(float),
                              "seeds": group["seeds"].to_numpy(int)}).sort_values("x")
        frame = frame.reset_index(drop=True)
        series[label] = frame
        marker = "o" if len(frame) <= _MARKERS_UP_TO else None
        (line,) = ax.plot(frame["x"], frame["y"], label=label, marker=marker, markersize=3)
        if frame["low"].notna().any():
            ax.fill_between(frame["x"], frame["low"], frame["high"], alpha=0.2,
                            color=line.get_color(), linewidth=0)
    _references(ax, references)
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label_of(metric))
    seeds = sorted({int(s) for frame in series.values() for s in frame["seeds"]})
    if seeds and seeds[-1] >= 2:
        counts = str(seeds[0]) if seeds[0] == seeds[-1] else f"{seeds[0]}-{seeds[-1]}"
        title = f"{label_of(metric)} per round (band: 95% interval over {counts} seeds)"
    else:
        title = f"{label_of(metric)} per round (one seed: no interval)"
    _title(ax, title, subtitle)
    ax.grid(True, alpha=0.3)
    if series or references:
        ax.legend(fontsize=7, ncol=1 if len(series) <= 6 else 2)
    _save(fig, path)
    return Plot(path, title, series)


def epsilon_axis(values: pd.Series) -> bool:
    """Whether epsilons are worth a plot: some finite, and two distinct values once a
    run without DP (never written, or inf) counts as epsilon = inf."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(float)
    x = np.where(np.isnan(x), np.inf, x)
    return bool(np.isfinite(x).any()) and len(np.unique(x)) > 1


def finite(values: pd.Series) -> bool:
    """True when a column has at least two distinct finite values (worth an axis)."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(float)
    x = x[np.isfinite(x)]
    return len(np.unique(x)) > 1 and not math.isnan(x.mean())

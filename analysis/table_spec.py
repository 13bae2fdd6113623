"""A paper-table spec (`configs/papers/NAME.yaml`): parsed, checked, its sweeps expanded.

Spec format (YAML):

    title: FedAvg vs FedSGD: rounds to 60% accuracy     # table caption
    source: McMahan et al. 2017, Table 2 (MNIST CNN, IID, target 99%)
    note: reduced scale: FEMNIST-300, 2NN, 100 rounds   # printed under the table
    requires_flags: [outlier_fraction]  # train.py flags the table needs (checked first)
    metric: test_accuracy       # metrics.csv column; names with loss/rmse/mae/error
                                # are lower-is-better (e.g. test_rmse for C-MAPSS)
    statistic: final            # final (last eval) | best | rounds_to_target
    target: 0.6                 # rounds_to_target: first eval round reaching it
    baseline: FedSGD            # rounds_to_target: factor = baseline rounds / row rounds
    digits: 3                   # decimals of the cells (default 3)
    tune:                       # a cell is the best setting of these flags among the
      client_learning_rate: lr  # row's runs (mean over seeds), shown as '(lr 0.1)'
    sweeps:                     # where the runs come from: sweep specs in
      - configs/sweeps/x.yaml   # experiments/sweep.py's format, as paths or
      - name: mcmahan2017       # inline mappings; results in <root>/<sweep name>/
        base: {model: 2nn, total_rounds: 100}
        zip: {algorithm: [fedsgd, fedavg], client_epochs_per_round: [1, 5]}
        seeds: 2
    columns:                    # optional second axis: one cell per value of a flag
      flag: partition
      values: [iid, shards]
      labels: [IID, non-IID]    # optional headers (default flag=value)
    rows:
      - label: FedSGD
        match: {algorithm: fedsgd}  # runs whose settings equal all of these
        published: 626              # a number, or {column value: number}; optional
      - label: naive (majority class)
        match: {algorithm: fedavg}
        metric: naive_accuracy      # a row may read another column (e.g. naive_rmse)
        across: true                # a reference: one value in every column
    plot:                       # optional: NAME.png, the metric against x
      x: hp_dirichlet_alpha     # a runs-table column (hp_<flag> for a setting)
      along: hp_dirichlet_alpha # the setting whose values make a line's points
      logx: true
      match: {partition: dirichlet}   # the runs plotted (default: all)
      references: [IID]         # rows drawn as horizontal lines (besides across rows)
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import yaml

from experiments import config as config_lib
from experiments.core.errors import UsageError
from experiments.core.paths import REPO_ROOT
from experiments.launch import spec as spec_lib

PAPERS_DIR = os.path.join(REPO_ROOT, "configs", "papers")
STATISTICS = ("final", "best", "rounds_to_target")
KEYS = ("title", "source", "note", "requires_flags", "metric", "statistic", "target",
        "baseline", "digits", "tune", "sweeps", "columns", "rows", "plot")
PLOT_KEYS = ("x", "along", "logx", "match", "references")
ROW_KEYS = ("label", "match", "published", "metric", "across")


@dataclasses.dataclass(frozen=True)
class Row:
    """One table row: which runs it reads, and the paper's number(s)."""

    label: str
    match: dict[str, Any]
    published: Any = None
    metric: str = ""
    across: bool = False  # a reference (e.g. no DP, naive): one value for every column


@dataclasses.dataclass(frozen=True)
class Spec:
    """A parsed paper-table spec (see the module docstring)."""

    name: str
    title: str
    rows: list[Row]
    sweeps: list[Any]
    metric: str = "test_accuracy"
    statistic: str = "final"
    target: float = math.nan
    baseline: str = ""
    source: str = ""
    note: str = ""
    requires_flags: tuple[str, ...] = ()
    column_flag: str = ""
    column_values: tuple = ()
    column_labels: tuple[str, ...] = ()
    digits: int = 3
    tune: dict[str, str] = dataclasses.field(default_factory=dict)  # flag -> shown name
    plot: dict = dataclasses.field(default_factory=dict)  # see the module docstring

    def column_label(self, index: int) -> str:
        """The header of column `index`: its label, or flag=value."""
        if self.column_labels:
            return self.column_labels[index]
        value = self.column_values[index]
        return f"{self.column_flag}={value:g}" if isinstance(value, float) else (
            f"{self.column_flag}={value}")


def spec_path(name: str) -> str:
    """configs/papers/NAME.yaml, or NAME itself if it is a file."""
    if os.path.isfile(name):
        return name
    path = os.path.join(PAPERS_DIR, f"{name}.yaml")
    if not os.path.isfile(path):
        raise UsageError(f"table '{name}': no spec {os.path.relpath(path, REPO_ROOT)}; known: "
                         f"{', '.join(known())}")
    return path


def known() -> list[str]:
    """The names of the shipped specs."""
    return sorted(f[:-5] for f in os.listdir(PAPERS_DIR) if f.endswith(".yaml"))


def _fail(where: str, message: str) -> UsageError:
    return UsageError(f"{where}: {message}")


def _rows(raw_rows: Any, where: str) -> list[Row]:
    if not isinstance(raw_rows, list) or not raw_rows:
        raise _fail(where, "rows: must be a non-empty list of {label, match, published}")
    rows = []
    for i, r in enumerate(raw_rows):
        if not isinstance(r, dict) or "label" not in r or any(k not in ROW_KEYS for k in r):
            raise _fail(where, f"rows[{i}]: must have label and only {', '.join(ROW_KEYS)}")
        match = r.get("match", {})
        if not isinstance(match, dict):
            raise _fail(where, f"rows[{i}].match: must be a mapping of flag: value")
        rows.append(Row(str(r["label"]), dict(match), r.get("published"),
                        str(r.get("metric", "")), bool(r.get("across", False))))
    return rows


def _columns(raw: dict, where: str) -> dict:
    columns = raw.get("columns") or {}
    if columns and (not isinstance(columns, dict) or "flag" not in columns
                    or not isinstance(columns.get("values"), list)
                    or any(k not in ("flag", "values", "labels") for k in columns)):
        raise _fail(where, "columns: must be {flag: NAME, values: [...], labels: [...]}")
    labels = columns.get("labels", [])
    if labels and (not isinstance(labels, list) or len(labels) != len(columns["values"])):
        raise _fail(where, "columns.labels: must be a list as long as columns.values")
    return columns


def _tune(raw: dict, where: str) -> dict[str, str]:
    tune = raw.get("tune") or {}
    if isinstance(tune, list):
        tune = {flag: flag for flag in tune}
    if not isinstance(tune, dict):
        raise _fail(where, "tune: must be a list of flags or a mapping flag: shown name")
    return {str(k): str(v) for k, v in tune.items()}


def _plot_spec(raw: dict, labels: list[str], where: str) -> dict:
    plot = raw.get("plot") or {}
    if plot and (not isinstance(plot, dict) or "x" not in plot
                 or any(k not in PLOT_KEYS for k in plot)):
        raise _fail(where, f"plot: must be a mapping with x and only {', '.join(PLOT_KEYS)}")
    unknown = [r for r in plot.get("references", []) if r not in labels]
    if unknown:
        raise _fail(where, f"plot.references: {unknown[0]!r} is not a row label "
                           f"({', '.join(labels)})")
    if not isinstance(plot.get("match", {}), dict):
        raise _fail(where, "plot.match: must be a mapping of flag: value")
    return dict(plot)


def parse(raw: Any, name: str, where: str) -> Spec:
    """Validates a loaded YAML spec; UsageErrors name the file and the key."""
    if not isinstance(raw, dict):
        raise _fail(where, f"must be a mapping with keys {', '.join(KEYS)}")
    unknown = [k for k in raw if k not in KEYS]
    if unknown:
        raise _fail(where, f"unknown key '{unknown[0]}'; valid: {', '.join(KEYS)}")
    statistic = raw.get("statistic", "final")
    if statistic not in STATISTICS:
        raise _fail(where, f"statistic: {statistic!r} is not one of {', '.join(STATISTICS)}")
    target = raw.get("target")
    if statistic == "rounds_to_target" and not isinstance(target, (int, float)):
        raise _fail(where, "statistic rounds_to_target needs a numeric target:")
    rows = _rows(raw.get("rows"), where)
    labels = [r.label for r in rows]
    baseline = str(raw.get("baseline", ""))
    if baseline and baseline not in labels:
        raise _fail(where, f"baseline: {baseline!r} is not a row label ({', '.join(labels)})")
    sweeps = raw.get("sweeps", [])
    if not isinstance(sweeps, list):
        raise _fail(where, "sweeps: must be a list of sweep spec paths or mappings")
    columns = _columns(raw, where)
    required = raw.get("requires_flags", [])
    if not isinstance(required, list):
        raise _fail(where, "requires_flags: must be a list of flag names")
    return Spec(name=name, title=str(raw.get("title", name)), rows=rows, sweeps=sweeps,
                metric=str(raw.get("metric", "test_accuracy")), statistic=statistic,
                target=float(target) if target is not None else math.nan,
                baseline=baseline, source=str(raw.get("source", "")),
                note=str(raw.get("note", "")), requires_flags=tuple(map(str, required)),
                column_flag=str(columns.get("flag", "")),
                column_values=tuple(columns.get("values", ())),
                column_labels=tuple(map(str, columns.get("labels", ()))),
                digits=int(raw.get("digits", 3)), tune=_tune(raw, where),
                plot=_plot_spec(raw, labels, where))


def load(name: str) -> Spec:
    """Reads and validates configs/papers/NAME.yaml (or a path)."""
    path = spec_path(name)
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise _fail(path, f"not valid YAML ({str(e).splitlines()[0]})") from None
    return parse(raw, os.path.splitext(os.path.basename(path))[0],
                 os.path.relpath(path, REPO_ROOT) if path.startswith(REPO_ROOT) else path)


def missing_flags(spec: Spec) -> list[str]:
    """The spec's required flags that this checkout's train.py does not define."""
    fields = {f.name for f in dataclasses.fields(config_lib.ExperimentConfig)}
    return [f for f in spec.requires_flags if f not in fields]


def sweep_names(spec: Spec) -> list[str]:
    """The names (result folders) of the spec's sweeps, without expanding them."""
    names = []
    for i, item in enumerate(spec.sweeps):
        if isinstance(item, dict):
            names.append(str(item.get("name", f"{spec.name}_{i}")))
        else:
            names.append(os.path.splitext(os.path.basename(item))[0])
    return names


def sweeps(spec: Spec) -> list[Any]:
    """The spec's sweeps, expanded (experiments.launch.spec); UsageErrors name the table."""
    expanded = []
    for i, item in enumerate(spec.sweeps):
        try:
            if isinstance(item, str):
                path = item if os.path.isabs(item) else os.path.join(REPO_ROOT, item)
                expanded.append(spec_lib.load(path, config_lib.ExperimentConfig))
            else:
                expanded.append(spec_lib.expand(item, f"{spec.name}_{i}",
                                                config_lib.ExperimentConfig))
        except UsageError as e:
            raise UsageError(f"table {spec.name}, sweeps[{i}]: {e}") from None
    return expanded

"""Paper tables: `./run.sh table NAME [--run]` -> markdown + LaTeX, published numbers beside ours.

    python -m analysis.tables mcmahan2017 [--run] [--root_output_dir=results]

NAME is a spec `configs/papers/NAME.yaml` (or a path to one). The table is
printed as markdown and written to `<root_output_dir>/tables/NAME.md` and
`NAME.tex`. Without `--run` it renders whatever results exist ('-' where a
row has none); with `--run` it first runs every missing trial of the spec's
sweeps through experiments.sweep (same runner: resumable, locked, failures
recorded), one trial at a time unless `--max_parallel` says otherwise.

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
    sweeps:                     # where the runs come from: sweep specs in
      - configs/sweeps/x.yaml   # experiments/sweep.py's format, as paths or
      - name: mcmahan2017       # inline mappings; results in <root>/<sweep name>/
        base: {model: 2nn, total_rounds: 100}
        zip: {algorithm: [fedsgd, fedavg], client_epochs_per_round: [1, 5]}
        seeds: 2
    columns:                    # optional second axis: one cell per value of a flag
      flag: noise_multiplier
      values: [0.0, 0.3, 1.0]
    rows:
      - label: FedSGD
        match: {algorithm: fedsgd}  # runs whose settings equal all of these
        published: 626              # a number, or {column value: number}; optional
      - label: naive (majority class)
        match: {algorithm: fedavg}
        metric: naive_accuracy      # a row may read another column (e.g. naive_rmse)
        across: true                # a reference: one value in every column

Rows that read an epsilon column name what it is of: its delta, and the cohort
and population accounted (a simulated deployment's where there is one).
Cells are the mean over seeds with a 95% Student-t interval in brackets (the
rows' matching complete runs). Published values are copied from the paper as
given in the spec (same units as the metric).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import Any

import pandas as pd
import yaml
from absl import flags

from analysis import plots, render, runs
from experiments import config as config_lib
from experiments.core import binary
from experiments.core import results as results_lib
from experiments.core.errors import UsageError
from experiments.core.paths import REPO_ROOT
from experiments.launch import flags as launch_flags
from experiments.launch import runner as runner_lib
from experiments.launch import spec as spec_lib

PAPERS_DIR = os.path.join(REPO_ROOT, "configs", "papers")
TABLES_DIR = "tables"
STATISTICS = ("final", "best", "rounds_to_target")
KEYS = ("title", "source", "note", "requires_flags", "metric", "statistic", "target",
        "baseline", "digits", "sweeps", "columns", "rows", "plot")
PLOT_KEYS = ("x", "along", "logx")
ROW_KEYS = ("label", "match", "published", "metric", "across")

_FLAGS = flags.FLAGS
# --root_output_dir (results root; tables go to <it>/tables/) and --max_parallel
# are the sweep runner's, which --run uses.
launch_flags.define()
if "run" not in _FLAGS:
    flags.DEFINE_boolean("run", False, "Run the spec's missing trials first.")


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
    digits: int = 3
    plot: dict = dataclasses.field(default_factory=dict)  # {x, along, logx}: metric vs x


@dataclasses.dataclass(frozen=True)
class Table:
    """A rendered table: its cells (for tests) and the two texts."""

    headers: list[str]
    rows: list[list[str]]
    values: dict[str, dict[Any, float]]  # label -> column value (None) -> our mean
    markdown: str
    latex: str


# ----- the spec ---------------------------------------------------------------------------
def spec_path(name: str) -> str:
    """configs/papers/NAME.yaml, or NAME itself if it is a file."""
    if os.path.isfile(name):
        return name
    path = os.path.join(PAPERS_DIR, f"{name}.yaml")
    if not os.path.isfile(path):
        known = sorted(f[:-5] for f in os.listdir(PAPERS_DIR) if f.endswith(".yaml"))
        raise UsageError(f"table '{name}': no spec {os.path.relpath(path, REPO_ROOT)}; known: "
                         f"{', '.join(known)}")
    return path


def _fail(where: str, message: str) -> UsageError:
    return UsageError(f"{where}: {message}")


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
    raw_rows = raw.get("rows")
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
    labels = [r.label for r in rows]
    baseline = str(raw.get("baseline", ""))
    if baseline and baseline not in labels:
        raise _fail(where, f"baseline: {baseline!r} is not a row label ({', '.join(labels)})")
    sweeps = raw.get("sweeps", [])
    if not isinstance(sweeps, list):
        raise _fail(where, "sweeps: must be a list of sweep spec paths or mappings")
    columns = raw.get("columns") or {}
    if columns and (not isinstance(columns, dict) or "flag" not in columns
                    or not isinstance(columns.get("values"), list)):
        raise _fail(where, "columns: must be {flag: NAME, values: [...]}")
    if columns and statistic == "rounds_to_target":
        raise _fail(where, "columns: not supported with statistic rounds_to_target")
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
                digits=int(raw.get("digits", 3)), plot=_plot_spec(raw, where))


def _plot_spec(raw: dict, where: str) -> dict:
    plot = raw.get("plot") or {}
    if plot and (not isinstance(plot, dict) or "x" not in plot
                 or any(k not in PLOT_KEYS for k in plot)):
        raise _fail(where, f"plot: must be a mapping with x and only {', '.join(PLOT_KEYS)}")
    return dict(plot)


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


# ----- results ----------------------------------------------------------------------------
def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(value, bool):
        return str(value).lower() == str(wanted).lower()
    if isinstance(wanted, (int, float)):
        try:
            return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return str(value) == str(wanted)


def select(runs_table: pd.DataFrame, match: dict[str, Any]) -> pd.DataFrame:
    """The complete runs whose settings equal every `flag: value` of `match`."""
    if runs_table.empty:
        return runs_table
    keep = runs_table["complete"].astype(bool)
    for flag, wanted in match.items():
        column = f"hp_{flag}"
        if column not in runs_table:
            return runs_table.iloc[:0]
        keep &= runs_table[column].map(lambda v, w=wanted: _matches(v, w))
    return runs_table[keep]


def load_results(spec: Spec, root: str) -> pd.DataFrame:
    """All runs of the spec's sweeps that exist under `root` (one row per run)."""
    frames = []
    names = []
    for i, item in enumerate(spec.sweeps):
        if isinstance(item, dict):
            names.append(item.get("name", f"{spec.name}_{i}"))
        else:
            names.append(os.path.splitext(os.path.basename(item))[0])
    for name in names:
        folder = os.path.join(root, str(name))
        if os.path.isdir(folder):
            table = runs.load_sweep(folder)
            if not table.empty:
                frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def rounds_to_target(path: str, metric: str, target: float) -> float:
    """First eval round whose metric reaches the target (<= for losses); NaN if none."""
    run = runs.load_run(path).dropna(subset=[metric])
    hit = run[metric] <= target if runs.lower_is_better(metric) else run[metric] >= target
    return float(run.loc[hit, "round"].iloc[0]) if hit.any() else math.nan


def _values(spec: Spec, row: Row, selected: pd.DataFrame) -> list[float]:
    metric = row.metric or spec.metric
    if selected.empty:
        return []
    if spec.statistic == "rounds_to_target":
        return [rounds_to_target(p, metric, spec.target) for p in selected["path"]]
    column = f"best_{metric}" if spec.statistic == "best" else metric
    if column not in selected:
        return []
    return [float(v) for v in selected[column]]


# ----- rendering --------------------------------------------------------------------------
def _accounted(row: Row, selected: pd.DataFrame) -> str:
    """For an epsilon row: ` (delta 2.5e-07; 1,000 of 1,000,000)`, what the epsilon is of."""
    if not row.metric.startswith("epsilon") or selected.empty:
        return ""
    parts = []
    for column, text in (("dp_delta", "delta {:.2g}"),
                         ("accounted_cohort", "{:,.0f} of"),
                         ("accounted_population", "{:,.0f}")):
        found = selected[column].dropna().unique() if column in selected else []
        if len(found) == 1:
            parts.append(text.format(found[0]))
    return f" ({parts[0]}; {' '.join(parts[1:])})" if len(parts) == 3 else ""



def _published(row: Row, column: Any) -> float | None:
    value = row.published
    if isinstance(value, dict):
        value = next((v for k, v in value.items() if _matches(column, k)), None)
    return float(value) if isinstance(value, (int, float)) else None


def _cell(values: list[float], digits: int) -> tuple[str, float]:
    if not values:
        return "-", math.nan
    mean, low, high = runs.t_interval(values)
    return render.interval(mean, low, high, digits), mean


def _rounds_cell(values: list[float], max_rounds: float) -> tuple[str, float]:
    """Mean rounds to target; '> T' if some seed never reached it."""
    if not values:
        return "-", math.nan
    if any(math.isnan(v) for v in values):
        return f"> {max_rounds:g}", math.inf
    mean = sum(values) / len(values)
    return f"{mean:.1f}" if len(values) > 1 else f"{mean:g}", mean


def _factor(base: float, rounds: float) -> str:
    if math.isnan(base) or math.isnan(rounds):
        return "-"
    if math.isinf(rounds):
        return "-" if math.isinf(base) else f"< {1.0:.1f}"
    if math.isinf(base):
        return "more"
    return f"{base / rounds:.1f}x"


def render_table(spec: Spec, results: pd.DataFrame) -> Table:
    """The spec's table from a runs table (runs.load_sweep rows of its sweeps)."""
    has_published = any(r.published is not None for r in spec.rows)
    columns = list(spec.column_values) or [None]
    values: dict[str, dict[Any, float]] = {}
    body: list[list[str]] = []
    metric = spec.metric
    if spec.statistic == "rounds_to_target":
        max_rounds = float(results["rounds"].max()) if "rounds" in results else math.nan
        cells = {}
        for row in spec.rows:
            runs_of = _values(spec, row, select(results, row.match))
            cells[row.label] = _rounds_cell(runs_of, max_rounds)
            values[row.label] = {None: cells[row.label][1]}
        base = cells[spec.baseline][1] if spec.baseline else math.nan
        pub_base = next((_published(r, None) for r in spec.rows if r.label == spec.baseline),
                        None)
        headers = ["", f"rounds to {metric} {spec.target:g}"]
        headers += [f"factor vs {spec.baseline}"] if spec.baseline else []
        if has_published:
            headers += ["rounds (published)"] + (
                ["factor (published)"] if spec.baseline else [])
        for row in spec.rows:
            text, rounds = cells[row.label]
            line = [row.label, text] + ([_factor(base, rounds)] if spec.baseline else [])
            if has_published:
                pub = _published(row, None)
                line.append(render.number(pub, 0) if pub is not None else "-")
                if spec.baseline:
                    line.append(f"{pub_base / pub:.1f}x" if pub and pub_base else "-")
            body.append(line)
    else:
        stat = "best" if spec.statistic == "best" else "final"
        headers = [""]
        for column in columns:
            name = f"{spec.column_flag}={render.setting(column)}" if column is not None else (
                f"{metric} ({stat})")
            headers.append(name if column is not None else f"ours: {name}")
            if has_published:
                headers.append(f"{name} published" if column is not None else "published")
        for row in spec.rows:
            line = [row.label + _accounted(row, select(results, row.match))]
            values[row.label] = {}
            for column in columns:
                match = dict(row.match)
                if column is not None and not row.across:
                    match[spec.column_flag] = column
                text, mean = _cell(_values(spec, row, select(results, match)), spec.digits)
                values[row.label][column] = mean
                line.append(text)
                if has_published:
                    pub = _published(row, column)
                    line.append(render.number(pub, spec.digits) if pub is not None else "-")
            body.append(line)
    right = [False] + [True] * (len(headers) - 1)
    caption = spec.title + (f" (published: {spec.source})" if spec.source else "")
    md = f"### {spec.title}\n\n" + render.markdown(headers, body, right)
    notes = [n for n in (f"Published: {spec.source}." if spec.source else "",
                         spec.note) if n]
    complete = int(results["complete"].sum()) if not results.empty else 0
    notes.append(f"Ours: mean over seeds [95% t-interval], from {complete} complete runs.")
    md += "\n" + "\n".join(notes) + "\n"
    tex = render.latex(headers, body, caption=caption, label=f"tab:{spec.name}",
                       align_right=right)
    return Table(headers, body, values, md, tex)


# ----- running ----------------------------------------------------------------------------
def run_missing(spec: Spec, root: str, max_parallel: int) -> int:
    """Runs every sweep of the spec (finished trials are skipped); worst exit code."""
    missing = missing_flags(spec)
    if missing:
        raise UsageError(f"table {spec.name} needs --{', --'.join(missing)}, which this "
                         f"train.py does not define")
    code = 0
    for item, expanded in zip(spec.sweeps, sweeps(spec), strict=True):
        path = item if isinstance(item, str) else ""
        code = max(code, runner_lib.Runner(expanded, root, max_parallel, path).run())
    return code


def write(spec: Spec, root: str) -> tuple[Table, list[str]]:
    """Renders the table from the results under root into root/tables/NAME.{md,tex} (and
    NAME.png for a spec with a plot); returns the table and the paths written."""
    found = load_results(spec, root)
    table = render_table(spec, found)
    folder = os.path.join(root, TABLES_DIR)
    os.makedirs(folder, exist_ok=True)
    md_path = os.path.join(folder, f"{spec.name}.md")
    tex_path = os.path.join(folder, f"{spec.name}.tex")
    results_lib.atomic_write(md_path, table.markdown.encode())
    results_lib.atomic_write(tex_path, table.latex.encode())
    written = [md_path, tex_path]
    if spec.plot and not found.empty:
        written.append(os.path.join(folder, f"{spec.name}.png"))
        _plot(spec, found[found["complete"].astype(bool)], table, written[-1])
    return table, written


def _plot(spec: Spec, found: pd.DataFrame, table: Table, path: str) -> None:
    """The spec's metric against `plot.x`, the reference rows as horizontal lines."""
    references = {row.label: next(iter(table.values[row.label].values()))
                  for row in spec.rows if row.across}
    plots.tradeoff(found, spec.plot["x"], spec.metric, path, along=spec.plot.get("along"),
                   title=spec.title, logx=bool(spec.plot.get("logx", False)),
                   references=references)


def _table(args: list[str]) -> None:
    """Runs (with --run) and renders the table named by the one argument."""
    spec = load(args[0])
    code = run_missing(spec, _FLAGS.root_output_dir, _FLAGS.max_parallel) if _FLAGS.run else 0
    missing = missing_flags(spec)
    table, written = write(spec, _FLAGS.root_output_dir)
    print(table.markdown)
    if missing:
        print(f"note: this table needs --{', --'.join(missing)}, which this "
              f"train.py does not define yet")
    print(f"written: {', '.join(written)}")
    sys.exit(1 if code else 0)


def _usage() -> str:
    known = sorted(f[:-5] for f in os.listdir(PAPERS_DIR) if f.endswith(".yaml"))
    return f"give exactly one table name ({', '.join(known)}): ./run.sh table NAME [--run]"


if __name__ == "__main__":
    binary.run_with_arguments("table", _table, _usage(), 1)

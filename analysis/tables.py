"""Paper tables: `./run.sh table NAME [--run]` -> markdown + LaTeX, published numbers beside ours.

    python -m analysis.tables mcmahan2017 [--run] [--root_output_dir=results]

NAME is a spec `configs/papers/NAME.yaml` (or a path to one; its format is in
analysis/table_spec.py). The table is printed as markdown and written to
`<root_output_dir>/tables/NAME.md` and `NAME.tex` (and `NAME.png` for a spec
with a plot). Without `--run` it renders whatever results exist ('-' where a
row has none); with `--run` it first runs every missing trial of the spec's
sweeps through experiments.sweep (same runner: resumable, locked, failures
recorded), one trial at a time unless `--max_parallel` says otherwise.

Cells are the mean over seeds with a 95% Student-t interval in brackets (the
row's matching complete runs); with `tune`, the best setting's mean, the
setting shown beside it. Rows that read an epsilon column name what it is of:
its delta, and the cohort and population accounted (a simulated deployment's
where there is one). Published values are copied from the paper as given in
the spec (same units as the metric).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import Any

import pandas as pd
from absl import flags

from analysis import plots, render, runs
from analysis.table_spec import Row, Spec, known, load, missing_flags, sweep_names, sweeps
from experiments.core import binary
from experiments.core import results as results_lib
from experiments.core.errors import UsageError
from experiments.launch import flags as launch_flags
from experiments.launch import runner as runner_lib

TABLES_DIR = "tables"
INTERRUPTED = 128  # the runner's exit code after a stop signal is 128 + its number

_FLAGS = flags.FLAGS
# --root_output_dir (results root; tables go to <it>/tables/) and --max_parallel
# are the sweep runner's, which --run uses.
launch_flags.define()
if "run" not in _FLAGS:
    flags.DEFINE_boolean("run", False, "Run the spec's missing trials first.")


@dataclasses.dataclass(frozen=True)
class Table:
    """A rendered table: its cells (for tests) and the two texts."""

    headers: list[str]
    rows: list[list[str]]
    values: dict[str, dict[Any, float]]  # label -> column value (None) -> our mean
    markdown: str
    latex: str


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell: its text and its value (rounds to target: inf when a seed missed it)."""

    text: str
    value: float


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
    for name in sweep_names(spec):
        folder = os.path.join(root, name)
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


def _values(spec: Spec, metric: str, selected: pd.DataFrame) -> list[float]:
    if selected.empty:
        return []
    if spec.statistic == "rounds_to_target":
        return [rounds_to_target(p, metric, spec.target) for p in selected["path"]]
    column = f"best_{metric}" if spec.statistic == "best" else metric
    if column not in selected:
        return []
    return [float(v) for v in selected[column]]


def _tuning_groups(spec: Spec, selected: pd.DataFrame) -> list[tuple[dict, pd.DataFrame]]:
    """The row's runs split by the values of the spec's tuned flags that vary among them."""
    varied = [f for f in spec.tune if f"hp_{f}" in selected
              and selected[f"hp_{f}"].nunique(dropna=False) > 1]
    if not varied:
        return [({}, selected)]
    grouped = selected.groupby([f"hp_{f}" for f in varied], dropna=False, sort=True)
    return [(dict(zip(varied, key if isinstance(key, tuple) else (key,), strict=True)), group)
            for key, group in grouped]


def _cell(spec: Spec, metric: str, selected: pd.DataFrame) -> Cell:
    """The statistic of the runs (mean over seeds), of the best tuned setting if tuning."""
    best: tuple[float, Cell] = (math.inf, Cell("-", math.nan))
    sign = 1.0 if spec.statistic == "rounds_to_target" or runs.lower_is_better(metric) else -1
    if selected.empty:
        return Cell("-", math.nan)
    for setting, group in _tuning_groups(spec, selected):
        values = _values(spec, metric, group)
        if spec.statistic == "rounds_to_target":
            cell = _rounds_cell(values, float(group["rounds"].max()))
        else:
            cell = _stat_cell(values, spec.digits)
        if setting:
            shown = ", ".join(f"{spec.tune[f]} {render.setting(v)}" for f, v in setting.items())
            cell = Cell(f"{cell.text} ({shown})", cell.value)
        score = sign * cell.value if not math.isnan(cell.value) else math.inf
        if score < best[0] or best[1].text == "-":
            best = (score, cell)
    return best[1]


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


def _stat_cell(values: list[float], digits: int) -> Cell:
    if not values:
        return Cell("-", math.nan)
    mean, low, high = runs.t_interval(values)
    return Cell(render.interval(mean, low, high, digits), mean)


def _rounds_cell(values: list[float], max_rounds: float) -> Cell:
    """Mean rounds to target; '> T' if some seed never reached it."""
    if not values:
        return Cell("-", math.nan)
    if any(math.isnan(v) for v in values):
        return Cell(f"> {max_rounds:g}", math.inf)
    mean = sum(values) / len(values)
    return Cell(f"{mean:.1f}" if len(values) > 1 else f"{mean:g}", mean)


def _factor(base: float, rounds: float) -> str:
    if math.isnan(base) or math.isnan(rounds):
        return "-"
    if math.isinf(rounds):
        return "-" if math.isinf(base) else f"< {1.0:.1f}"
    if math.isinf(base):
        return "more"
    return f"{base / rounds:.1f}x"


def _row_match(spec: Spec, row: Row, column: Any) -> dict[str, Any]:
    match = dict(row.match)
    if column is not None and not row.across:
        match[spec.column_flag] = column
    return match


def _cells(spec: Spec, results: pd.DataFrame) -> dict[str, dict[Any, Cell]]:
    """Every row's cell in every column (column None when the spec has no columns)."""
    columns = list(spec.column_values) or [None]
    return {row.label: {c: _cell(spec, row.metric or spec.metric,
                                 select(results, _row_match(spec, row, c)))
                        for c in columns}
            for row in spec.rows}


def _rounds_body(spec: Spec, cells: dict[str, dict[Any, Cell]]
                 ) -> tuple[list[str], list[list[str]]]:
    """Rounds to target per column, the factor over the baseline row, the paper's."""
    has_published = any(r.published is not None for r in spec.rows)
    columns = list(spec.column_values) or [None]
    headers = [""]
    for i, column in enumerate(columns):
        if column is None:
            headers.append(f"rounds to {spec.metric} {spec.target:g}")
            prefix = ""
        else:
            prefix = f"{spec.column_label(i)}: "
            headers.append(f"{prefix}rounds to {spec.target:g}")
        headers += [f"{prefix}factor vs {spec.baseline}"] if spec.baseline else []
        if has_published:
            headers.append(f"{prefix}published")
            headers += [f"{prefix}published factor"] if spec.baseline else []
    body = []
    base_row = next((r for r in spec.rows if r.label == spec.baseline), None)
    for row in spec.rows:
        line = [row.label]
        for column in columns:
            cell = cells[row.label][column]
            line.append(cell.text)
            if spec.baseline:
                line.append(_factor(cells[spec.baseline][column].value, cell.value))
            if has_published:
                pub = _published(row, column)
                line.append(render.number(pub, 0) if pub is not None else "-")
                pub_base = _published(base_row, column) if base_row else None
                if spec.baseline:
                    line.append(f"{pub_base / pub:.1f}x" if pub and pub_base else "-")
        body.append(line)
    return headers, body


def _statistic_body(spec: Spec, cells: dict[str, dict[Any, Cell]], results: pd.DataFrame
                    ) -> tuple[list[str], list[list[str]]]:
    """The final (or best) metric per column, the paper's beside it."""
    has_published = any(r.published is not None for r in spec.rows)
    columns = list(spec.column_values) or [None]
    stat = "best" if spec.statistic == "best" else "final"
    headers = [""]
    for i, column in enumerate(columns):
        name = spec.column_label(i) if column is not None else f"{spec.metric} ({stat})"
        headers.append(name if column is not None else f"ours: {name}")
        if has_published:
            headers.append(f"{name} published" if column is not None else "published")
    body = []
    for row in spec.rows:
        line = [row.label + _accounted(row, select(results, row.match))]
        for column in columns:
            line.append(cells[row.label][column].text)
            if has_published:
                pub = _published(row, column)
                line.append(render.number(pub, spec.digits) if pub is not None else "-")
        body.append(line)
    return headers, body


def render_table(spec: Spec, results: pd.DataFrame) -> Table:
    """The spec's table from a runs table (runs.load_sweep rows of its sweeps)."""
    cells = _cells(spec, results)
    values = {label: {c: cell.value for c, cell in row.items()}
              for label, row in cells.items()}
    if spec.statistic == "rounds_to_target":
        headers, body = _rounds_body(spec, cells)
    else:
        headers, body = _statistic_body(spec, cells, results)
    right = [False] + [True] * (len(headers) - 1)
    caption = spec.title + (f" (published: {spec.source})" if spec.source else "")
    md = f"### {spec.title}\n\n" + render.markdown(headers, body, right)
    notes = [n for n in (f"Published: {spec.source}." if spec.source else "",
                         spec.note) if n]
    complete = int(results["complete"].sum()) if not results.empty else 0
    tuned = (f"; the best {', '.join(spec.tune.values())} of each cell's runs"
             if spec.tune else "")
    notes.append(f"Ours: mean over seeds [95% t-interval]{tuned}, from {complete} "
                 f"complete runs.")
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
        if code >= INTERRUPTED:  # Ctrl-C / SIGTERM stops the table, not just one sweep
            break
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
    """The spec's metric against `plot.x` over the runs of `plot.match`; the across rows
    and the rows of `plot.references` (one line per column) as horizontal lines."""
    references = {}
    for row in spec.rows:
        if row.across:
            references[row.label] = next(iter(table.values[row.label].values()))
    for label in spec.plot.get("references", []):
        for i, (column, value) in enumerate(table.values[label].items()):
            name = label if column is None else f"{label}, {spec.column_label(i)}"
            references[name] = value
    plots.tradeoff(select(found, spec.plot.get("match", {})), spec.plot["x"], spec.metric,
                   path, along=spec.plot.get("along"), title=spec.title,
                   logx=bool(spec.plot.get("logx", False)), references=references)


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
    sys.exit(code if code >= INTERRUPTED else 1 if code else 0)


def _usage() -> str:
    return f"give exactly one table name ({', '.join(known())}): ./run.sh table NAME [--run]"


if __name__ == "__main__":
    binary.run_with_arguments("table", _table, _usage(), 1)

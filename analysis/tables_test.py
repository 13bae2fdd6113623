"""Paper tables: specs parse, cells are the right runs' numbers, markdown and LaTeX render."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from analysis import fakes, runs, table_spec, tables
from experiments import config as config_lib
from experiments.core.errors import UsageError
from experiments.core.paths import REPO_ROOT


def _spec(**overrides) -> table_spec.Spec:
    raw = {"title": "T", "source": "Paper 2020, Table 1", "metric": "test_accuracy",
           "sweeps": [{"name": "s", "grid": {"algorithm": ["fedavg", "fedsgd"]}}],
           "rows": [{"label": "FedAvg", "match": {"algorithm": "fedavg"}, "published": 0.9},
                    {"label": "FedSGD", "match": {"algorithm": "fedsgd"}},
                    {"label": "naive", "match": {"algorithm": "fedavg"},
                     "metric": "naive_accuracy"}]}
    raw.update(overrides)
    return table_spec.parse(raw, "t", "t.yaml")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    folder = str(root / "s")
    for seed, final in enumerate((0.8, 0.9)):
        fakes.experiment(folder, f"avg{seed}", {"algorithm": "fedavg", "seed": seed},
                         [0.3, 0.6, final])
    fakes.experiment(folder, "sgd0", {"algorithm": "fedsgd"}, [0.1, 0.2, 0.4, 0.65])
    fakes.experiment(folder, "sgd_unfinished", {"algorithm": "fedsgd", "seed": 5}, [0.99],
                     complete=False)
    return str(root)


def test_final_table_markdown_and_latex(results):
    spec = _spec()
    table = tables.render_table(spec, tables.load_results(spec, results))
    half = stats.t.ppf(0.975, 1) * np.std([0.8, 0.9], ddof=1) / np.sqrt(2)
    assert table.values["FedAvg"][None] == pytest.approx(0.85)
    assert table.values["FedSGD"][None] == pytest.approx(0.65)  # unfinished run left out
    assert table.values["naive"][None] == pytest.approx(0.05)
    expected = ("|  | ours: test_accuracy (final) | published |\n"
                "|---|---:|---:|\n"
                f"| FedAvg | 0.850 [{0.85 - half:.3f}, {0.85 + half:.3f}] | 0.900 |\n"
                "| FedSGD | 0.650 | - |\n"
                "| naive | 0.050 [0.050, 0.050] | - |\n")  # two seeds, same value
    assert expected in table.markdown
    assert "Published: Paper 2020, Table 1." in table.markdown
    assert r"\begin{tabular}{lrr}" in table.latex
    assert r"ours: test\_accuracy (final) & published \\" in table.latex
    assert r"FedSGD & 0.650 & - \\" in table.latex
    assert r"\label{tab:t}" in table.latex


def test_rounds_to_target_and_factor(results):
    spec = _spec(statistic="rounds_to_target", target=0.6, baseline="FedSGD",
                 rows=[{"label": "FedSGD", "match": {"algorithm": "fedsgd"}, "published": 626},
                       {"label": "FedAvg", "match": {"algorithm": "fedavg"}, "published": 20}])
    table = tables.render_table(spec, tables.load_results(spec, results))
    assert table.rows == [["FedSGD", "4", "1.0x", "626", "1.0x"],
                          ["FedAvg", "2.0", "2.0x", "20", "31.3x"]]
    unreachable = _spec(statistic="rounds_to_target", target=0.95, baseline="FedSGD")
    rows = tables.render_table(unreachable, tables.load_results(unreachable, results)).rows
    assert rows[0][:3] == ["FedAvg", "> 3", "-"]  # its own budget: 3 rounds


def test_columns_split_cells_by_a_flag(tmp_path):
    folder = str(tmp_path / "dp")
    for z, acc in ((0.0, 0.7), (1.0, 0.4)):
        for outliers, drop in ((0.0, 0.0), (0.01, 0.1)):
            fakes.experiment(folder, f"z{z}o{outliers}",
                             {"noise_multiplier": z, "outlier_fraction": outliers,
                              "algorithm": "fedavg_unweighted", "dp": "fixed"}, [acc - drop])
    spec = table_spec.parse({"sweeps": [{"name": "dp"}],
                         "columns": {"flag": "noise_multiplier", "values": [0.0, 1.0]},
                         "rows": [{"label": "clean", "match": {"outlier_fraction": 0.0},
                                   "published": {0.0: 0.71}},
                                  {"label": "outliers", "match": {"outlier_fraction": 0.01}}]},
                        "dp", "dp.yaml")
    table = tables.render_table(spec, tables.load_results(spec, str(tmp_path)))
    assert table.headers == ["", "noise_multiplier=0", "noise_multiplier=0 published",
                             "noise_multiplier=1", "noise_multiplier=1 published"]
    assert table.rows == [["clean", "0.700", "0.710", "0.400", "-"],
                          ["outliers", "0.600", "-", "0.300", "-"]]


def test_references_span_columns_and_epsilon_rows_say_what_they_are_of(tmp_path):
    folder = str(tmp_path / "deploy")
    accounted = {"dp_delta": 2.5e-7, "accounted_cohort": 1000,
                 "accounted_population": 1_000_000}
    for z, acc, eps in ((0.5, 0.6, 4.0), (1.0, 0.5, 1.0)):
        fakes.experiment(folder, f"z{z}", {"noise_multiplier": z, "dp": "fixed",
                                           "algorithm": "fedavg_unweighted"},
                         [acc], epsilon=eps, columns=accounted)
    fakes.experiment(folder, "nodp", {"algorithm": "fedavg_unweighted"}, [0.7])
    raw = {"sweeps": [{"name": "deploy"}],
           "columns": {"flag": "noise_multiplier", "values": [0.5, 1.0]},
           "rows": [{"label": "no DP", "match": {"dp": "none"}, "across": True},
                    {"label": "DP", "match": {"dp": "fixed"}},
                    {"label": "epsilon", "match": {"dp": "fixed"}, "metric": "epsilon_rdp"}]}
    spec = table_spec.parse(raw, "deploy", "deploy.yaml")
    table = tables.render_table(spec, tables.load_results(spec, str(tmp_path)))
    assert table.rows == [["no DP", "0.700", "0.700"], ["DP", "0.600", "0.500"],
                          ["epsilon (delta 2.5e-07; 1,000 of 1,000,000)", "4.000", "1.000"]]
    plotted = table_spec.parse({**raw, "plot": {"x": "epsilon_rdp",
                                            "along": "hp_noise_multiplier"}},
                           "deploy", "deploy.yaml")
    _, written = tables.write(plotted, str(tmp_path))
    assert [os.path.basename(p) for p in written] == ["deploy.md", "deploy.tex", "deploy.png"]
    assert os.path.getsize(written[-1]) > 0


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A learning-rate grid on two partitions: which setting wins is known per cell."""
    root = tmp_path_factory.mktemp("grid")
    folder = str(root / "g")
    curves = {  # (partition, lr) -> accuracy per round; target 0.6
        ("iid", 0.05): [0.3, 0.5, 0.6, 0.7], ("iid", 0.1): [0.4, 0.6, 0.7, 0.8],
        ("iid", 0.2): [0.2, 0.2, 0.2, 0.2], ("shards", 0.05): [0.1, 0.3, 0.5, 0.6],
        ("shards", 0.1): [0.1, 0.2, 0.3, 0.4], ("shards", 0.2): [0.1, 0.2, 0.4, 0.5]}
    for (partition, lr), curve in curves.items():
        fakes.experiment(folder, f"{partition}{lr}", {"partition": partition,
                                                     "client_learning_rate": lr}, curve)
    fakes.experiment(folder, "iid0.1s1", {"partition": "iid", "client_learning_rate": 0.1,
                                          "seed": 1}, [0.3, 0.5, 0.6, 0.8])
    for partition, slr, curve in (("iid", 0.3, [0.1, 0.2, 0.3, 0.4]),
                                  ("iid", 1.0, [0.2, 0.3, 0.4, 0.6]),
                                  ("shards", 1.0, [0.1, 0.1, 0.1, 0.1])):
        fakes.experiment(folder, f"sgd{partition}{slr}",
                         {"partition": partition, "algorithm": "fedsgd",
                          "server_learning_rate": slr}, curve)
    return str(root)


def _grid_spec(**overrides) -> table_spec.Spec:
    raw = {"sweeps": [{"name": "g"}], "statistic": "rounds_to_target", "target": 0.6,
           "baseline": "FedSGD",
           "tune": {"client_learning_rate": "lr", "server_learning_rate": "server lr"},
           "columns": {"flag": "partition", "values": ["iid", "shards"],
                       "labels": ["IID", "non-IID"]},
           "rows": [{"label": "FedSGD", "match": {"algorithm": "fedsgd"},
                     "published": {"iid": 626, "shards": 483}},
                    {"label": "FedAvg", "match": {"algorithm": "fedavg"},
                     "published": {"iid": 20, "shards": 229}}]}
    raw.update(overrides)
    return table_spec.parse(raw, "g", "g.yaml")


def test_tuning_takes_each_cells_best_setting_and_says_which(grid):
    spec = _grid_spec()
    table = tables.render_table(spec, tables.load_results(spec, grid))
    assert table.headers == [
        "", "IID: rounds to 0.6", "IID: factor vs FedSGD", "IID: published",
        "IID: published factor", "non-IID: rounds to 0.6", "non-IID: factor vs FedSGD",
        "non-IID: published", "non-IID: published factor"]
    # FedAvg IID: lr 0.1 reaches 0.6 at rounds 2 and 3 (two seeds, mean 2.5) but lr 0.05
    # at round 3 and lr 0.2 never, so 0.1 wins; non-IID only lr 0.05 reaches it (round 4).
    # FedSGD: only server lr 1 reaches it (IID round 4); non-IID never (one setting).
    assert table.rows == [
        ["FedSGD", "4 (server lr 1)", "1.0x", "626", "1.0x", "> 4", "-", "483", "1.0x"],
        ["FedAvg", "2.5 (lr 0.1)", "1.6x", "20", "31.3x", "4 (lr 0.05)", "more", "229",
         "2.1x"]]
    assert table.values["FedAvg"] == {"iid": 2.5, "shards": 4.0}
    assert "the best lr, server lr of each cell's runs" in table.markdown


def test_tuning_a_final_metric_prefers_the_highest_mean(grid):
    spec = _grid_spec(statistic="final", baseline="", target=None,
                      rows=[{"label": "FedAvg", "match": {"algorithm": "fedavg"}}])
    table = tables.render_table(spec, tables.load_results(spec, grid))
    assert table.rows == [["FedAvg", "0.800 [0.800, 0.800] (lr 0.1)", "0.600 (lr 0.05)"]]
    untuned = _grid_spec(statistic="final", baseline="", target=None, tune=None,
                         rows=[{"label": "FedAvg", "match": {"algorithm": "fedavg"}}])
    values = tables.render_table(untuned, tables.load_results(untuned, grid)).values
    assert values["FedAvg"]["iid"] == pytest.approx(np.mean([0.7, 0.8, 0.2, 0.8]))


def test_plot_draws_the_matched_runs_and_reference_rows(grid):
    spec = _grid_spec(statistic="final", baseline="", target=None,
                      plot={"x": "hp_client_learning_rate", "match": {"partition": "iid"},
                            "references": ["FedSGD"]})
    table, written = tables.write(spec, grid)
    assert written[-1].endswith("g.png") and os.path.getsize(written[-1]) > 0
    assert table.values["FedSGD"] == {"iid": 0.6, "shards": 0.1}


def test_regression_metric_lower_is_better(tmp_path):
    """A C-MAPSS-style table: test_rmse, reached when it falls to the target."""
    from experiments.core import results as results_lib

    path = fakes.experiment(str(tmp_path / "reg"), "fed", {"algorithm": "fedavg"},
                            [0.5, 0.5, 0.5])
    metrics = results_lib.load_metrics(path)
    assert "test_rmse" not in metrics  # fakes are classification; check the rule itself
    assert runs.lower_is_better("test_rmse") and not runs.lower_is_better("test_accuracy")
    assert tables.rounds_to_target(path, "test_loss", 0.5) == 1.0
    assert math.isnan(tables.rounds_to_target(path, "test_loss", 0.1))


@pytest.mark.parametrize("raw, words", [
    ({"rows": []}, ("rows", "non-empty")),
    ({"rows": [{"label": "a"}], "statistic": "median"}, ("statistic", "final, best")),
    ({"rows": [{"label": "a"}], "statistic": "rounds_to_target"}, ("target",)),
    ({"rows": [{"label": "a"}], "baseline": "b"}, ("baseline", "'b'")),
    ({"rows": [{"label": "a", "mtach": {}}]}, ("rows[0]",)),
    ({"rows": [{"label": "a"}], "colour": 1}, ("unknown key 'colour'",)),
    ({"rows": [{"label": "a"}], "columns": {"flag": "f", "value": [1]}}, ("columns",)),
    ({"rows": [{"label": "a"}], "columns": {"flag": "f", "values": [1, 2],
                                            "labels": ["x"]}}, ("columns.labels",)),
    ({"rows": [{"label": "a"}], "plot": {"x": "hp_f", "references": ["b"]}},
     ("plot.references", "'b'")),
    ({"rows": [{"label": "a"}], "tune": 3}, ("tune",)),
])
def test_bad_specs_are_one_line(raw, words):
    with pytest.raises(UsageError) as caught:
        table_spec.parse(raw, "x", "configs/papers/x.yaml")
    message = str(caught.value)
    assert message.startswith("configs/papers/x.yaml: ") and "\n" not in message
    for word in words:
        assert word in message, message


def test_unknown_flag_in_a_table_is_one_line(tmp_path):
    spec = table_spec.parse({"requires_flags": ["no_such_flag"], "rows": [{"label": "a"}],
                         "sweeps": [{"name": "s", "grid": {"no_such_flag": [1]}}]},
                        "x", "x.yaml")
    assert table_spec.missing_flags(spec) == ["no_such_flag"]
    with pytest.raises(UsageError, match="^table x needs --no_such_flag, which this train.py"):
        tables.run_missing(spec, str(tmp_path), 1)
    with pytest.raises(UsageError, match=r"^table x, sweeps\[0\]: grid: unknown flag"):
        table_spec.sweeps(spec)


def _trial_config(flags: dict) -> config_lib.ExperimentConfig:
    """The ExperimentConfig a trial's flags make (its flagfile's lines first)."""
    fields = {f.name: f for f in dataclasses.fields(config_lib.ExperimentConfig)}
    merged = {}
    if "flagfile" in flags:
        for line in open(flags["flagfile"]):
            if line.startswith("--") and "=" in line:
                key, value = line.strip()[2:].split("=", 1)
                default = fields[key].default
                merged[key] = (value == "true" if isinstance(default, bool)
                               else type(default)(value))
    merged.update({k: v for k, v in flags.items() if k != "flagfile"})
    return config_lib.ExperimentConfig(**merged)


def test_every_shipped_spec_parses_expands_and_every_trial_is_valid():
    """A trial the train binary would refuse (e.g. a flag that only applies to another
    setting) fails here, not hours into a --run."""
    names = sorted(f[:-5] for f in os.listdir(table_spec.PAPERS_DIR) if f.endswith(".yaml"))
    assert {"mcmahan2017", "reddi2021", "fed_vs_central", "dp_outlier"} <= set(names)
    for name in names:
        spec = table_spec.load(name)
        if table_spec.missing_flags(spec):
            continue
        for sweep in table_spec.sweeps(spec):
            assert sweep.trials, name
            for trial in sweep.trials:
                config_lib.validate(_trial_config(trial.flags))


def test_cli_renders_and_names_unknown_tables(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    bad = subprocess.run([sys.executable, "-m", "analysis.tables", "nosuch"], cwd=REPO_ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert bad.stderr.startswith("table: error: table 'nosuch': no spec configs/papers/")
    good = subprocess.run([sys.executable, "-m", "analysis.tables", "mcmahan2017",
                           f"--root_output_dir={tmp_path}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    assert "| FedAvg E=5 B=10 | - | - | 20 | 31.3x |" in good.stdout
    assert os.path.exists(tmp_path / "tables" / "mcmahan2017.tex")


def test_a_stopped_sweep_stops_the_table(monkeypatch, tmp_path):
    """Ctrl-C / SIGTERM during `--run` ends the table run; later sweeps do not start."""
    started = []

    class StoppedRunner:
        def __init__(self, sweep, *args):
            self.sweep = sweep

        def run(self) -> int:
            started.append(self.sweep.name)
            return 128 + 2

    monkeypatch.setattr(tables.runner_lib, "Runner", StoppedRunner)
    spec = table_spec.parse({"rows": [{"label": "a"}],
                             "sweeps": [{"name": "first"}, {"name": "second"}]}, "x", "x.yaml")
    assert tables.run_missing(spec, str(tmp_path), 1) == 130
    assert started == ["first"]

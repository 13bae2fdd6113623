"""`experiments.sweep`: spec expansion and checks in-process, runs as real subprocesses.

Expansion and validation need no training. The CLI cases run
`python -m experiments.sweep` on the tiny 6-client fixture (logistic model,
2 rounds), each trial a real `experiments.train` process: a 4-trial sweep
that completes and then skips everything on a rerun, a sweep with a trial
train.py rejects (recorded as failed, exit 1), a sweep refused because the
test holds its lock, and a spec with a misspelt flag (exit 2, one line).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing

import numpy as np
import pytest
import yaml

from analysis import runs
from experiments import sweep
from experiments.config import ExperimentConfig
from experiments.core.errors import UsageError
from experiments.core.paths import REPO_ROOT
from experiments.launch import runner
from experiments.launch import spec as spec_lib

_FIELDS = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
_TYPES = typing.get_type_hints(ExperimentConfig)


def _expand(spec: dict, name: str) -> spec_lib.Sweep:
    return spec_lib.expand(spec, name, ExperimentConfig)

TIMEOUT_SECONDS = 240


# ----- expansion -------------------------------------------------------------------------
def test_grid_is_crossed_in_spec_order():
    result = _expand({"grid": {"noise_multiplier": [0.1, 0.5],
                                    "clients_per_round": [20, 50, 100]}}, "s")
    assert result.name == "s"
    assert [t.varied for t in result.trials] == [
        {"noise_multiplier": nm, "clients_per_round": k}
        for nm in (0.1, 0.5) for k in (20, 50, 100)]
    assert result.trials[0].name == "noise_multiplier=0.1,clients_per_round=20"


def test_zip_rows_vary_together_and_seeds_repeat():
    spec = {"name": "dp", "base": {"total_rounds": 3, "model": "logistic"},
            "grid": {"noise_multiplier": [0.1, 1.0]},
            "zip": {"clients_per_round": [10, 50], "server_learning_rate": [1.0, 2.0]},
            "seeds": 3}
    result = _expand(spec, "ignored")
    assert result.name == "dp"
    assert len(result.trials) == 2 * 2 * 3
    assert [(t.varied["noise_multiplier"], t.varied["clients_per_round"],
             t.varied["server_learning_rate"], t.varied["seed"])
            for t in result.trials[:6]] == [
        (0.1, 10, 1.0, 0), (0.1, 10, 1.0, 1), (0.1, 10, 1.0, 2),
        (0.1, 50, 2.0, 0), (0.1, 50, 2.0, 1), (0.1, 50, 2.0, 2)]
    first = result.trials[0]
    assert first.name == ("noise_multiplier=0.1,clients_per_round=10,"
                          "server_learning_rate=1.0,seed=0")
    assert first.flags == {"total_rounds": 3, "model": "logistic", **first.varied}
    lines = first.flag_lines("/out/dp")
    assert lines[-3:] == [f"--experiment_name={first.name}", "--root_output_dir=/out/dp",
                          "--noprogress"]
    assert "--seed=0" in lines and "--model=logistic" in lines
    names = [t.name for t in result.trials]
    assert len(set(names)) == len(names)
    assert names == [t.name for t in _expand(spec, "ignored").trials]  # stable


def test_cases_each_set_their_own_flags():
    spec = {"base": {"model": "cnn"},
            "grid": {"clients_per_round": [10, 20]},
            "cases": [{"compression": "none"},
                      {"compression": "quantize", "quantization_bits": 2},
                      {"compression": "random_mask", "keep_fraction": 0.25}],
            "seeds": 2}
    result = _expand(spec, "compression")
    assert len(result.trials) == 2 * 3 * 2
    assert [t.name for t in result.trials[:6]] == [
        "clients_per_round=10,compression=none,seed=0",
        "clients_per_round=10,compression=none,seed=1",
        "clients_per_round=10,compression=quantize,quantization_bits=2,seed=0",
        "clients_per_round=10,compression=quantize,quantization_bits=2,seed=1",
        "clients_per_round=10,compression=random_mask,keep_fraction=0.25,seed=0",
        "clients_per_round=10,compression=random_mask,keep_fraction=0.25,seed=1"]
    masked = result.trials[4]
    assert masked.flags == {"model": "cnn", "clients_per_round": 10,
                            "compression": "random_mask", "keep_fraction": 0.25, "seed": 0}


def test_seed_list_and_safe_names():
    result = _expand({"grid": {"task": ["emnist_character"],
                                    "data_dir": ["/data/a b"]}, "seeds": [7, 3]}, "s")
    assert [t.varied["seed"] for t in result.trials] == [7, 3]
    assert result.trials[0].name == "task=emnist_character,data_dir=_data_a_b,seed=7"
    assert "/" not in result.trials[0].name
    # No varied values at all: one trial.
    assert [t.name for t in _expand({"base": {"seed": 1}}, "s").trials] == ["base"]


def test_yaml_floats_and_flagfile_are_resolved(tmp_path):
    spec = tmp_path / "my_sweep.yaml"
    spec.write_text("base:\n  total_rounds: 3\n  flagfile: configs/emnist_fedavg_demo.cfg\n"
                    "grid:\n  client_learning_rate: [1e-3, 0.1]\n")
    result = sweep.load(str(spec))
    assert result.name == "my_sweep"
    assert [t.varied["client_learning_rate"] for t in result.trials] == [0.001, 0.1]
    assert result.trials[0].flags["flagfile"] == os.path.join(
        REPO_ROOT, "configs", "emnist_fedavg_demo.cfg")
    # The flagfile comes first, so the spec's own flags override it.
    assert result.trials[0].flag_lines("/o")[:2] == [
        f"--flagfile={result.trials[0].flags['flagfile']}", "--total_rounds=3"]


def test_example_spec_expands():
    result = sweep.load(os.path.join(REPO_ROOT, "configs", "sweeps", "femnist_dp.yaml"))
    assert result.name == "femnist_dp"
    assert len(result.trials) == 3 * 2 * 2


# ----- validation ------------------------------------------------------------------------
@pytest.mark.parametrize("spec, needles", [
    ({"grid": {"noise_multipler": [0.1]}}, ("grid", "noise_multipler",
                                             "did you mean 'noise_multiplier'")),
    ({"base": {"clients_per_rnd": 3}}, ("base", "did you mean 'clients_per_round'")),
    ({"zip": {"clip": [1.0, 2.0], "clients_per_round": [1, 2, 3]}},
     ("zip", "equal lengths", "clip: 2", "clients_per_round: 3")),
    ({"grid": {"clip": []}}, ("grid.clip", "non-empty list")),
    ({"grid": {"clip": 1.0}}, ("grid.clip", "non-empty list")),
    ({"grid": [1, 2]}, ("grid", "mapping")),
    ({"base": "x"}, ("base", "mapping")),
    ({"gird": {}}, ("unknown section 'gird'", "did you mean 'grid'")),
    ([1], ("mapping",)),
    ({"seeds": 0}, ("seeds",)),
    ({"seeds": 2, "grid": {"seed": [1, 2]}}, ("grid.seed", "seeds")),
    ({"base": {"clip": 1.0}, "grid": {"clip": [2.0]}}, ("grid.clip", "already set in base")),
    ({"grid": {"algorithm": ["fedavgg"]}}, ("grid.algorithm[0]", "did you mean 'fedavg'")),
    ({"grid": {"clients_per_round": [2.5]}}, ("clients_per_round", "integer")),
    ({"base": {"root_output_dir": "x"}}, ("root_output_dir", "set by the sweep")),
    ({"base": {"flagfile": "configs/nope.cfg"}}, ("flagfile", "not found")),
    ({"name": "a/b"}, ("name",)),
    ({"cases": {"clip": 1.0}}, ("cases", "list of mappings")),
    ({"cases": [{"clip": 1.0}, {}]}, ("cases[1]", "non-empty mapping")),
    ({"cases": [{"compresion": "none"}]}, ("cases[0]", "did you mean 'compression'")),
    ({"cases": [{"compression": "zip"}]}, ("cases[0].compression",)),
    ({"base": {"clip": 1.0}, "cases": [{"clip": 2.0}]}, ("cases[0].clip",
                                                         "already set in base")),
    ({"seeds": 2, "cases": [{"seed": 1}]}, ("cases", "seeds")),
])
def test_bad_specs_are_one_line_usage_errors(spec, needles):
    with pytest.raises(UsageError) as info:
        _expand(spec, "s")
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_invalid_yaml_is_a_usage_error(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("grid:\n  clip: [1.0\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        sweep.load(str(spec))
    with pytest.raises(UsageError, match="cannot read"):
        sweep.load(str(tmp_path / "missing.yaml"))


# ----- the CLI ---------------------------------------------------------------------------
def _env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k != "TFF_DATA_DIR" and not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=REPO_ROOT, HOME=home, PYTHONUNBUFFERED="1")
    return env


def _write_spec(path, emnist_dir: str, grid: dict, seeds=None, name: str = "tiny") -> str:
    spec = {"name": name,
            "base": {"data_dir": emnist_dir, "model": "logistic", "total_rounds": 2,
                     "rounds_per_eval": 1},
            "grid": grid}
    if "clients_per_round" not in grid:
        spec["base"]["clients_per_round"] = 2
    if seeds is not None:
        spec["seeds"] = seeds
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def _sweep(spec: str, root: str, home: str, parallel: int = 2
           ) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.sweep", spec, f"--root_output_dir={root}",
         f"--max_parallel={parallel}"],
        cwd=REPO_ROOT, env=_env(home), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=TIMEOUT_SECONDS)


def _report(run: subprocess.CompletedProcess) -> str:
    return f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"


def _status(folder) -> dict:
    with open(os.path.join(folder, runner.STATUS_FILE)) as f:
        return json.load(f)


@pytest.fixture()
def home(tmp_path) -> str:
    folder = tmp_path / "home"
    folder.mkdir()
    return str(folder)


def test_tiny_sweep_completes_and_rerun_skips(tmp_path, emnist_dir, home):
    spec = _write_spec(tmp_path / "tiny.yaml", emnist_dir,
                       {"client_learning_rate": [0.1, 0.05]}, seeds=2)
    root = str(tmp_path / "out")
    run = _sweep(spec, root, home)
    assert run.returncode == 0, _report(run)
    folder = os.path.join(root, "tiny")
    table = runs.load_sweep(folder)
    assert len(table) == 4, _report(run)
    assert table["complete"].all()
    assert (table["rounds"] == 2).all()
    assert sorted(zip(table["hp_client_learning_rate"], table["hp_seed"], strict=True)) == [
        (0.05, 0), (0.05, 1), (0.1, 0), (0.1, 1)]
    assert set(table["experiment"]) == {
        f"client_learning_rate={lr},seed={s}" for lr in (0.1, 0.05) for s in (0, 1)}
    status = _status(folder)
    assert status["counts"]["done"] == 4
    assert all(t["status"] == "done" and t["exit_code"] == 0
               for t in status["trials"].values())
    # Progress: one line per change on a pipe, ending with all four done.
    progress = [line for line in run.stderr.splitlines() if line.startswith("sweep tiny:")]
    assert "2 running" in "\n".join(progress), _report(run)
    assert progress[-1].startswith("sweep tiny: 4/4 done, 0 running, 0 failed"), _report(run)
    # Each trial's command is reproducible from its flagfile.
    cfg = os.path.join(folder, ".trials", "client_learning_rate=0.1,seed=0.cfg")
    with open(cfg) as f:
        lines = f.read().splitlines()
    assert "--seed=0" in lines and f"--root_output_dir={folder}" in lines

    started = time.monotonic()
    again = _sweep(spec, root, home)
    assert again.returncode == 0, _report(again)
    assert time.monotonic() - started < 30, "the rerun should not train"
    status = _status(folder)
    assert status["counts"]["skipped"] == 4
    assert "4 skipped" in again.stdout, _report(again)
    assert "running" not in {t["status"] for t in status["trials"].values()}
    assert "1 running" not in again.stderr and "2 running" not in again.stderr


def test_failing_trial_is_recorded_and_others_complete(tmp_path, emnist_dir, home):
    spec = _write_spec(tmp_path / "fail.yaml", emnist_dir,
                       {"clients_per_round": [2, 99]}, name="fail")
    root = str(tmp_path / "out")
    run = _sweep(spec, root, home)
    assert run.returncode == 1, _report(run)
    folder = os.path.join(root, "fail")
    trials = _status(folder)["trials"]
    assert trials["clients_per_round=2"]["status"] == "done"
    bad = trials["clients_per_round=99"]
    assert bad["status"] == "failed" and bad["exit_code"] == 2
    assert bad["last_stderr"].startswith("train: error: --clients_per_round=99")
    assert "clients_per_round=99" in run.stdout and "failed" in run.stdout
    table = runs.load_sweep(folder)
    assert list(table.loc[table["complete"], "experiment"]) == ["clients_per_round=2"]


def test_second_sweep_on_a_locked_folder_is_refused(tmp_path, emnist_dir, home):
    spec = _write_spec(tmp_path / "locked.yaml", emnist_dir,
                       {"client_learning_rate": [0.1]}, name="locked")
    root = tmp_path / "out"
    (root / "locked").mkdir(parents=True)
    with open(root / "locked" / runner.LOCK_FILE, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        run = _sweep(spec, str(root), home)
    assert run.returncode == 2, _report(run)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sweep: error: another sweep"), \
        _report(run)
    assert not os.path.exists(root / "locked" / "client_learning_rate=0.1")
    assert not os.path.exists(root / "locked" / runner.STATUS_FILE)


def test_typo_in_spec_is_one_line_exit_2(tmp_path, home):
    spec = tmp_path / "typo.yaml"
    spec.write_text("grid:\n  noise_multipler: [0.1, 0.5]\n")
    run = _sweep(str(spec), str(tmp_path / "out"), home)
    assert run.returncode == 2, _report(run)
    assert run.stderr.strip().splitlines() == [
        "sweep: error: grid: unknown flag 'noise_multipler'; did you mean "
        "'noise_multiplier'?"], _report(run)
    assert not os.path.exists(tmp_path / "out")


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def test_sigterm_stops_trials_and_records_them_interrupted(tmp_path, emnist_dir, home):
    spec = _write_spec(tmp_path / "term.yaml", emnist_dir,
                       {"client_learning_rate": [0.1]}, name="term")
    with open(spec) as f:
        text = f.read().replace("total_rounds: 2", "total_rounds: 100000")
    with open(spec, "w") as f:
        f.write(text)
    root = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", spec, f"--root_output_dir={root}",
         "--max_parallel=1"],
        cwd=REPO_ROOT, env=_env(home), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    metrics = root / "term" / "client_learning_rate=0.1" / "metrics.csv"
    deadline = time.monotonic() + 120
    try:
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, (
                "no round was written", proc.poll())
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    trial = _status(root / "term")["trials"]["client_learning_rate=0.1"]
    assert trial["status"] == "interrupted", trial
    assert "run the same command again to resume" in stdout
    # This sweep's own trial (its flagfile is under tmp_path; other sweeps on the
    # machine may run trials of the same name).
    assert not _processes_mentioning(f"{root}/term/.trials/client_learning_rate=0.1.cfg")


# ----- random search -----------------------------------------------------------------------
_RANDOM = {"count": 3, "seed": 7,
           "client_learning_rate": {"loguniform": [0.001, 1.0]},
           "clip": {"uniform": [0.1, 2.0]},
           "model": {"choice": ["2nn", "cnn", "logistic"]},
           "client_batch_size": {"int": [5, 8]}}


def _expected_samples(seed: int, count: int) -> list[dict]:
    """The documented draw order, recomputed with numpy: sample by sample, flag by flag."""
    rng = np.random.Generator(np.random.PCG64(seed))
    rows = []
    for _ in range(count):
        lr = math.exp(rng.uniform(math.log(0.001), math.log(1.0)))
        clip = rng.uniform(0.1, 2.0)
        model = ["2nn", "cnn", "logistic"][int(rng.integers(3))]
        batch = int(rng.integers(5, 9))
        rows.append({"client_learning_rate": float(f"{lr:.6g}"),
                     "clip": float(f"{clip:.6g}"), "model": model,
                     "client_batch_size": batch})
    return rows


def test_random_section_is_seeded_and_exact():
    spec = {"grid": {"noise_multiplier": [0.1, 1.0]}, "random": dict(_RANDOM), "seeds": 2}
    result = _expand(spec, "r")
    samples = _expected_samples(7, 3)
    assert len(result.trials) == 2 * 3 * 2
    # Order: grid x random samples x seeds; every sample keeps its values across the grid.
    expected = [{"noise_multiplier": z, **s, "seed": seed}
                for z in (0.1, 1.0) for s in samples for seed in (0, 1)]
    assert [t.varied for t in result.trials] == expected
    for trial in result.trials:
        v = trial.varied
        assert 0.001 <= v["client_learning_rate"] < 1.0 and 0.1 <= v["clip"] < 2.0
        assert 5 <= v["client_batch_size"] <= 8 and isinstance(v["client_batch_size"], int)
        assert f"client_learning_rate={v['client_learning_rate']!r}" in trial.name
    assert _expand(spec, "r") == result  # reproducible
    other = _expand({**spec, "random": {**_RANDOM, "seed": 8}}, "r")
    assert [t.varied for t in other.trials] != expected


def test_random_int_covers_both_ends_and_default_seed_is_zero():
    rows = spec_lib.random_rows({"count": 200, "client_batch_size": {"int": [1, 3]}},
                             _FIELDS, _TYPES)
    assert {r["client_batch_size"] for r in rows} == {1, 2, 3}
    again = spec_lib.random_rows({"count": 200, "seed": 0, "client_batch_size": {"int": [1, 3]}},
                              _FIELDS, _TYPES)
    assert rows == again


@pytest.mark.parametrize("section, words", [
    ({"count": 2, "clip": {"gaussian": [0, 1]}}, ("random.clip", "unknown distribution",
                                                   "uniform, loguniform, choice, int")),
    ({"count": 2, "clip": {"uniform": [1.0, 0.5]}}, ("random.clip.uniform", "low")),
    ({"count": 2, "clip": {"loguniform": [0.0, 1.0]}}, ("random.clip.loguniform", "> 0")),
    ({"count": 2, "clients_per_round": {"uniform": [1, 5]}},
     ("random.clients_per_round", "int or choice")),
    ({"count": 0, "clip": {"uniform": [0.1, 1.0]}}, ("random.count", ">= 1")),
    ({"clip": {"uniform": [0.1, 1.0]}}, ("random.count",)),
    ({"count": 2, "clp": {"uniform": [0.1, 1.0]}}, ("random", "unknown flag 'clp'",
                                                    "did you mean 'clip'")),
    ({"count": 2, "algorithm": {"choice": ["fedavg", "fedavgg"]}}, ("random.algorithm.choice[1]",)),
    ({"count": 2}, ("random", "at least one flag")),
])
def test_random_section_errors_are_one_line(section, words):
    with pytest.raises(UsageError) as caught:
        _expand({"random": section}, "bad")
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_random_flag_also_in_grid_is_refused():
    with pytest.raises(UsageError, match="random.clip: already set in grid"):
        _expand({"grid": {"clip": [1.0]},
                      "random": {"count": 1, "clip": {"uniform": [0.1, 1.0]}}}, "s")


# ----- Ray launcher ------------------------------------------------------------------------
def test_ray_launcher_without_ray_is_one_line(monkeypatch):
    from experiments.launch import ray_launcher

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UsageError) as caught:
        ray_launcher.RayLauncher("", 1.0, 0.0)
    assert str(caught.value).startswith("--launcher=ray: the ray package is not installed")


def _ray_processes() -> list[int]:
    return [p for p in _processes_mentioning("raylet") + _processes_mentioning("gcs_server")
            if p != os.getpid()]


@pytest.mark.slow
def test_ray_launcher_runs_the_same_trials(tmp_path, emnist_dir, home):
    pytest.importorskip("ray")
    before = set(_ray_processes())
    spec = _write_spec(tmp_path / "ray.yaml", emnist_dir,
                       {"client_learning_rate": [0.1, 0.05]}, name="rayrun")
    root = str(tmp_path / "out")
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    run = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", spec, f"--root_output_dir={root}",
         "--launcher=ray", "--max_parallel=2", "--cpus_per_trial=1"],
        cwd=REPO_ROOT, env={**_env(home), "RAY_TMPDIR": ray_tmp},  # short: socket paths <= 107
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert run.returncode == 0, _report(run)
    folder = os.path.join(root, "rayrun")
    table = runs.load_sweep(folder)
    assert sorted(table["experiment"]) == ["client_learning_rate=0.05",
                                           "client_learning_rate=0.1"], _report(run)
    assert table["complete"].all() and (table["rounds"] == 2).all()
    assert _status(folder)["counts"]["done"] == 2
    # Same results as a local run of one of the trials (non-DP runs are deterministic).
    local = _sweep(_write_spec(tmp_path / "local.yaml", emnist_dir,
                               {"client_learning_rate": [0.1]}, name="local"), root, home)
    assert local.returncode == 0, _report(local)
    ray_metrics = runs.load_run(os.path.join(folder, "client_learning_rate=0.1"))
    local_metrics = runs.load_run(os.path.join(root, "local", "client_learning_rate=0.1"))
    np.testing.assert_allclose(ray_metrics["test_accuracy"].dropna(),
                               local_metrics["test_accuracy"].dropna())
    # The local cluster is gone with the sweep.
    deadline = time.monotonic() + 30
    while set(_ray_processes()) - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not set(_ray_processes()) - before
    assert not _processes_mentioning(f"{folder}/.trials/client_learning_rate=0.1.cfg")

"""`python -m experiments.train` as a user runs it: bad input, and a tiny good run.

Every bad input must end with exactly one line on stderr, `train: error: ...`,
naming the flag or file and what would be valid, exit code 2, no traceback,
nothing on stdout, and no results folder that looks complete (summary.json).

Each case is a real subprocess with HOME in a temp dir (so ~/.tff is empty),
TFF_DATA_DIR unset and the download proxy set to a local port that refuses
connections (localhost exempt, as on a typical proxied machine), so the
data-absent case is hermetic even on a networked machine.
A subprocess spends most of its few seconds importing TensorFlow, so all
cases run concurrently in one module fixture and the tests read the results.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import os
import pathlib
import sqlite3
import subprocess
import sys

import pytest

from experiments.core.paths import REPO_ROOT

PREFIX = "train: error: "
TIMEOUT_SECONDS = 300
PARALLEL = 6
DATA_FILE = "emnist_all.sqlite"
# As on a machine behind a proxy: local traffic (TFF's worker channel) bypasses it.
LOCAL_HOSTS = "localhost,127.0.0.1,::1"


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad invocation and the words its error line must contain."""

    args: tuple[str, ...]
    needles: tuple[str, ...]
    data: str = "fixture"  # "fixture", "none" (no --data_dir) or a key of _data_dirs


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished subprocess."""

    returncode: int
    stdout: str
    stderr: str
    output_root: str


# Every case also gets the base flags (tiny fixture data, logistic model, one
# round, 2 of the 6 clients), so that if its one bad flag were accepted the run
# would succeed and the test would fail on the exit code.
CASES: dict[str, Case] = {
    "data_absent_default_dir": Case(
        (), (DATA_FILE, "--data_dir", "/.tff/" + DATA_FILE), data="none"),
    "data_absent_given_dir": Case((), (DATA_FILE, "--data_dir"), data="empty"),
    "data_not_sqlite": Case((), (DATA_FILE, "SQLite", "--data_dir"), data="garbage"),
    "data_without_tff_tables": Case(
        (), (DATA_FILE, "examples", "client_metadata"), data="no_tables"),
    "unknown_task": Case(("--task=no_such_task",),
                         ("--task=no_such_task", "emnist_character")),
    "unknown_algorithm": Case(("--algorithm=no_such_algorithm",),
                              ("--algorithm", "no_such_algorithm", "fedavg")),
    "invalid_model": Case(("--model=resnet",), ("--model", "resnet", "logistic")),
    "zero_rounds": Case(("--total_rounds=0",), ("--total_rounds=0", "positive")),
    "negative_clients_per_round": Case(("--clients_per_round=-1",),
                                       ("--clients_per_round=-1", "positive")),
    "clients_per_round_above_population": Case(
        ("--clients_per_round=7",), ("--clients_per_round=7", "6")),
    "learning_rate_not_a_number": Case(("--client_learning_rate=abc",),
                                       ("--client_learning_rate", "abc")),
    "missing_flagfile": Case(("--flagfile={tmp}/no_such_flags.cfg",),
                             ("--flagfile", "no_such_flags.cfg")),
    "unknown_flag": Case(("--total_round=3",), ("total_round", "total_rounds")),
    "bool_flag_not_a_bool": Case(("--only_digits=maybe",), ("--only_digits", "maybe")),
    "unwritable_output_root": Case(("--root_output_dir={tmp}/a_file/results",),
                                   ("--root_output_dir", "a_file")),
    "positional_argument": Case(("stray_word",), ("stray_word", "--name=value")),
    "cohort_exceeds_memory_budget": Case(
        ("--model=cnn", "--memory_budget_mb=1"),
        ("--clients_per_round=2", "--memory_budget_mb=1", "GiB", "--max_elements_per_client")),
    "dp_with_weighted_fedavg": Case(
        ("--dp=fixed", "--noise_multiplier=1.0"), ("--dp=fixed", "fedavg_unweighted")),
    "negative_noise_multiplier": Case(
        ("--algorithm=fedavg_unweighted", "--dp=fixed", "--noise_multiplier=-1"),
        ("--noise_multiplier=-1", ">= 0")),
    "tree_without_cyclic_sampling": Case(
        ("--algorithm=fedavg_unweighted", "--dp=tree", "--noise_multiplier=1"),
        ("--dp=tree", "--client_sampling=cyclic")),
    "experiment_name_with_slash": Case(("--experiment_name=a/b",),
                                       ("--experiment_name", "plain folder name")),
    "proximal_strength_with_fedavg": Case(
        ("--algorithm=fedavg", "--proximal_strength=0.5"),
        ("--proximal_strength", "fedprox")),
}


def _env(home: str, proxy: str) -> dict[str, str]:
    """The environment a user might have, minus anything that points at real data."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TFF_DATA_DIR", "TF_CPP_MIN_LOG_LEVEL")
           and not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=REPO_ROOT, HOME=home, PYTHONUNBUFFERED="1",
               FL_SHARED_DATA_DIR=os.path.join(home, "no_shared_data"),
               https_proxy=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, HTTP_PROXY=proxy,
               no_proxy=LOCAL_HOSTS, NO_PROXY=LOCAL_HOSTS)
    return env


def _train(args: list[str], env: dict[str, str], output_root: str) -> Run:
    completed = subprocess.run(
        [sys.executable, "-m", "experiments.train", *args], cwd=REPO_ROOT, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=TIMEOUT_SECONDS)
    return Run(completed.returncode, completed.stdout, completed.stderr, output_root)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> pathlib.Path:
    """Temp root holding HOME, the bad data dirs and every output root."""
    tmp = tmp_path_factory.mktemp("train")
    (tmp / "home").mkdir()
    (tmp / "a_file").write_text("a regular file, so nothing can be created under it")
    for name in ("empty", "garbage", "no_tables"):
        (tmp / name).mkdir()
    (tmp / "garbage" / DATA_FILE).write_bytes(b"\x89 definitely not sqlite \x00" * 400)
    db = sqlite3.connect(tmp / "no_tables" / DATA_FILE)
    db.execute("CREATE TABLE something_else (x INTEGER)")
    db.commit()
    db.close()
    return tmp


def _base_args(emnist_dir: str, output_root: str, data: str,
               tmp: pathlib.Path) -> list[str]:
    args = ["--model=logistic", "--total_rounds=1", "--clients_per_round=2",
            "--rounds_per_eval=1", "--progress=false", f"--root_output_dir={output_root}"]
    if data == "fixture":
        args.append(f"--data_dir={emnist_dir}")
    elif data != "none":
        args.append(f"--data_dir={tmp / data}")
    return args


@pytest.fixture(scope="module")
def runs(workspace, emnist_dir, refused_proxy) -> dict[str, Run]:
    """Every case, the successful run and the clashing rerun, run concurrently."""
    env = _env(str(workspace / "home"), refused_proxy)
    success_root = str(workspace / "out" / "success")
    success_args = _base_args(emnist_dir, success_root, "fixture", workspace) + [
        "--experiment_name=tiny"]
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        futures = {"success": pool.submit(_train, success_args, env, success_root)}

        def clash() -> Run:  # same name, another --seed, no --overwrite
            futures["success"].result()
            return _train(success_args + ["--seed=1"], env, success_root)

        futures["clash"] = pool.submit(clash)
        for name, case in CASES.items():
            root = str(workspace / "out" / name)
            args = _base_args(emnist_dir, root, case.data, workspace) + [
                a.format(tmp=workspace) for a in case.args]
            futures[name] = pool.submit(_train, args, env, root)
        return {name: future.result() for name, future in futures.items()}


def _complete_results(root: str) -> list[str]:
    return [os.path.join(d, "summary.json") for d, _, files in os.walk(root)
            if "summary.json" in files]


def _error_line(run: Run) -> str:
    """Asserts the one-line usage-error contract; returns the line."""
    report = f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert "Traceback" not in run.stderr + run.stdout, report
    assert run.returncode == 2, report
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr\n{report}"
    assert lines[0].startswith(PREFIX), report
    assert run.stdout.strip() == "", report
    return lines[0]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_code_2(runs, name):
    run = runs[name]
    line = _error_line(run)
    message = line[len(PREFIX):]
    for needle in CASES[name].needles:
        assert needle in message, f"{needle!r} missing from: {line}"
    assert not message.upper().startswith("ERROR"), f"doubled error prefix: {line}"
    assert _complete_results(run.output_root) == []


def test_unwritable_output_root_creates_nothing(runs, workspace):
    _error_line(runs["unwritable_output_root"])
    assert (workspace / "a_file").is_file()


def test_tiny_run_succeeds(runs):
    run = runs["success"]
    report = f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.returncode == 0, report
    assert "Traceback" not in run.stderr, report
    assert "final test accuracy" in run.stdout, report
    assert "results:" in run.stdout, report
    folder = os.path.join(run.output_root, "tiny")
    assert f"results: {folder}" in run.stdout
    assert os.path.isfile(os.path.join(folder, "summary.json"))
    # Nothing but results on stdout; with --progress=false, nothing on stderr.
    assert [line for line in run.stderr.splitlines() if line.strip()] == [], report


def test_same_name_other_config_needs_overwrite(runs):
    run = runs["clash"]
    line = _error_line(run)
    assert "--overwrite" in line and "--experiment_name" in line
    assert "--seed" in line  # says which setting differs
    folder = os.path.join(run.output_root, "tiny")
    # The completed experiment is left as it was, and nothing was set aside.
    hparams = (pathlib.Path(folder) / "hparams.json").read_text()
    assert '"seed": 0' in hparams
    assert os.path.isfile(os.path.join(folder, "summary.json"))
    assert os.listdir(run.output_root) == ["tiny"]


def _can_mount_in_namespace() -> bool:
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_in_namespace(),
                    reason="needs unshare and a tmpfs mount in a user+mount namespace")
def test_disk_full_is_one_line_keeps_rows_and_resumes(workspace, emnist_dir, refused_proxy):
    """A 400 KiB filesystem fills during checkpoints: one line, no summary, rows kept."""
    env = _env(str(workspace / "home"), refused_proxy)
    small = workspace / "small_disk"
    small.mkdir()
    args = _base_args(emnist_dir, str(small / "out"), "fixture", workspace) + [
        "--total_rounds=40", "--rounds_per_checkpoint=1", "--rounds_per_eval=5",
        "--experiment_name=full"]
    script = (f"mount -t tmpfs -o size=400k tmpfs {small} && "
              f"{{ {sys.executable} -m experiments.train {' '.join(args)}; rc=$?; "
              f"cp -r {small}/out {workspace}/after_full; exit $rc; }}")
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                           script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_SECONDS)
    line = _error_line(Run(done.returncode, done.stdout, done.stderr, str(small / "out")))
    assert "no space left" in line and "--root_output_dir" in line, line
    kept = workspace / "after_full" / "full"
    assert not (kept / "summary.json").exists()
    assert not [p for p in kept.rglob("*") if ".tmp-" in p.name]  # no half-written file
    with open(kept / "metrics.csv") as f:
        rounds = [int(r["round"]) for r in csv.DictReader(f)]
    assert rounds == list(range(1, len(rounds) + 1)) and 0 < len(rounds) < 40


@pytest.mark.skipif(not os.path.isfile(os.path.join(REPO_ROOT, "..", "shared", "data",
                                                    "emnist_all.sqlite.xz")),
                    reason="needs the project's shared data beside the checkout")
def test_run_sh_train_finds_the_shared_data_like_every_command(tmp_path):
    """`./run.sh train` on a machine with only the shared data (no ~/.tff, no
    $TFF_DATA_DIR): it resolves FEMNIST-300 as the demo does and says so."""
    env = {k: v for k, v in os.environ.items() if k != "TFF_DATA_DIR"}
    env["HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [os.path.join(REPO_ROOT, "run.sh"), "train", "--task=emnist_character",
         "--total_rounds=2", "--model=logistic", "--clients_per_round=2",
         f"--root_output_dir={tmp_path / 'out'}", "--noprogress"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "data: FEMNIST-300 (300 real writers, not the full EMNIST) from " in done.stdout
    assert "final test accuracy" in done.stdout
    assert not (tmp_path / "home" / ".tff").exists()  # nothing downloaded

"""End-to-end checks of the training loop: determinism, resumption, overwrite.

A result is only trustworthy if the same command reproduces it and if a run
killed at any moment and started again ends exactly where an uninterrupted
one does. Checked here, on the tiny EMNIST fixture:

* loop.run with a fake numpy trainer (no TFF, fast): eval rows exactly on
  multiples of --rounds_per_eval and the last round, checkpoints on
  multiples of --rounds_per_checkpoint and the last round (3 kept), and a
  crash after rows newer than the last checkpoint resumes to the same table;
* train() twice with one config gives identical metrics.csv (all columns
  but *_seconds); another seed gives different numbers; round sizes match
  the clients' example counts read straight from the SQLite file, and the
  eval columns match a numpy forward pass of the checkpointed final model;
* `python -m experiments.train` killed with SIGKILL mid-run (after rows
  newer than its last checkpoint), then run again, ends with the same rows
  as the uninterrupted run: none missing, none duplicated, summary.json;
* the same name with another config is refused (naming the flag and
  --overwrite); with overwrite=True the old folder is set aside intact;
* extending --total_rounds of a completed run continues from its last
  checkpoint (earlier rows are kept verbatim, timing included);
* the centralised baseline runs, with its eval columns filled and checked
  against numpy.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.config import ExperimentConfig
from experiments.core import results
from experiments.core.errors import UsageError
from experiments.core.paths import REPO_ROOT
from experiments.simulation import sampling
from experiments.training import loop
from experiments.training.evaluation import EVAL_COLUMNS

NAME = "loop_test"
TOTAL = 12
BASE = dict(model="2nn", total_rounds=TOTAL, clients_per_round=3, rounds_per_eval=2,
            rounds_per_checkpoint=2, client_batch_size=4, seed=0, progress=False,
            experiment_name=NAME)

# The columns a run without DP, secure sum or outliers writes (the rest are left out).
PLAIN_COLUMNS = loop.columns(omit=loop.unfilled(dp=False, secure_sum=False, outliers=False,
                                                distributed=False))


def _config(emnist_dir: str, root: str, **overrides) -> ExperimentConfig:
    return ExperimentConfig(**{**BASE, "data_dir": emnist_dir, "root_output_dir": root,
                               **overrides})


def _read_csv(folder: str) -> list[dict[str, str]]:
    with open(os.path.join(folder, results.METRICS), newline="") as f:
        return list(csv.DictReader(f))


def _without_seconds(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]


def _rounds(rows: list[dict[str, str]]) -> list[int]:
    return [int(r["round"]) for r in rows]


# ----- the fixture's data, read independently of tasks/ ----------------------------------
def _examples(emnist_dir: str, split: str) -> dict[str, list[tuple[np.ndarray, int]]]:
    """(pixels, label) of each client of a split, straight from the SQLite file."""
    import tensorflow as tf

    by_client: dict[str, list] = collections.defaultdict(list)
    path = os.path.join(emnist_dir, "emnist_all.sqlite")
    with sqlite3.connect(path) as db:
        order = [r[0] for r in db.execute(
            "SELECT client_id FROM client_metadata WHERE split_name = ? ORDER BY rowid",
            (split,))]
        for client, proto in db.execute(
                "SELECT client_id, serialized_example_proto FROM examples "
                "WHERE split_name = ? ORDER BY rowid", (split,)):
            feature = tf.train.Example.FromString(proto).features.feature
            pixels = np.array(feature["pixels"].float_list.value, dtype=np.float64)
            by_client[client].append((pixels, int(feature["label"].int64_list.value[0])))
    return {c: by_client[c] for c in order if by_client[c]}


def _expected_eval(emnist_dir: str, weights: list[np.ndarray]) -> dict[str, float]:
    """Eval columns of a dense ReLU network (Keras order of weights), in numpy."""
    test = _examples(emnist_dir, "all_test")
    losses, hits, per_client = [], [], []
    for examples in test.values():
        x = np.stack([p for p, _ in examples])
        y = np.array([label for _, label in examples])
        h = x
        for i in range(0, len(weights) - 2, 2):
            h = np.maximum(h @ weights[i] + weights[i + 1], 0.0)
        logits = h @ weights[-2] + weights[-1]
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        losses.extend(-log_probs[np.arange(len(y)), y])
        hit = np.argmax(logits, axis=1) == y
        hits.extend(hit)
        per_client.append(hit.mean())
    p10, p50, p90 = np.percentile(per_client, [10, 50, 90])
    train_labels = [label for ex in _examples(emnist_dir, "all_train").values()
                    for _, label in ex]
    counts = collections.Counter(train_labels)
    majority = [c for c, n in counts.items() if n == max(counts.values())]
    test_labels = np.array([label for ex in test.values() for _, label in ex])
    return {"test_loss": float(np.mean(losses)), "test_accuracy": float(np.mean(hits)),
            "fed_test_accuracy_mean": float(np.mean(per_client)),
            "fed_test_accuracy_p10": float(p10), "fed_test_accuracy_p50": float(p50),
            "fed_test_accuracy_p90": float(p90),
            "naive_accuracy_choices": [float(np.mean(test_labels == c)) for c in majority]}


def _assert_eval_matches(row: dict[str, str], expected: dict) -> None:
    assert float(row["test_loss"]) == pytest.approx(expected["test_loss"], rel=1e-5)
    for key in ("test_accuracy", "fed_test_accuracy_mean", "fed_test_accuracy_p10",
                "fed_test_accuracy_p50", "fed_test_accuracy_p90"):
        assert float(row[key]) == pytest.approx(expected[key], abs=1e-9), key
    # Ties for the majority class may be broken either way.
    assert any(float(row["naive_accuracy"]) == pytest.approx(a, abs=1e-12)
               for a in expected["naive_accuracy_choices"])


def _model_in_checkpoint(folder: str, round_num: int, shapes: list[tuple]) -> list:
    """The model weights inside a checkpoint: the run of arrays with these shapes."""
    path = os.path.join(folder, results.CHECKPOINTS, f"ckpt-{round_num:06d}.npz")
    with np.load(path) as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    starts = [s for s in range(len(arrays) - len(shapes) + 1)
              if [a.shape for a in arrays[s:s + len(shapes)]] == shapes]
    assert len(starts) == 1, f"model weights not found once in {path}"
    return [a.astype(np.float64) for a in arrays[starts[0]:starts[0] + len(shapes)]]


TWO_NN_SHAPES = [(784, 200), (200,), (200, 200), (200,), (200, 62), (62,)]


# ----- loop.run with a fake trainer (fast, no TFF) -----------------------------------
class _FakeTrainer:
    """A deterministic numpy 'model': the state is one vector updated per round."""

    def __init__(self, crash_at: int | None = None):
        self.crash_at = crash_at
        self.rounds_run: list[int] = []

    def initial_state(self):
        return np.array([1.0, 2.0])

    def run_round(self, state, round_num: int):
        if round_num == self.crash_at:
            raise RuntimeError("simulated crash")
        self.rounds_run.append(round_num)
        state = 0.9 * state + np.sin(round_num)
        row = {"train_loss": float(state[0]), "train_accuracy": float(state[1] % 1),
               "train_examples": 10 * round_num, "clients": 3,
               "bytes_down_per_client": 8, "bytes_up_per_client": 12}
        return state, row

    def model_weights(self, state):
        return [state]

    def personal_models(self, state):
        return {}

    def to_arrays(self, state):
        return [state]

    def from_arrays(self, arrays):
        return arrays[0]


class _FakeEvaluator:
    def evaluate(self, weights, own=None) -> dict[str, float]:
        value = float(np.tanh(weights[0][0]))
        return {column: value + i for i, column in enumerate(EVAL_COLUMNS)}


def _fake_run(root: str, total: int, crash_at: int | None = None,
              every_eval: int = 3, every_checkpoint: int = 4):
    experiment = results.Experiment.open(root, "fake", {"total": "n/a"}, loop.columns(),
                                         resumable=frozenset({"total"}))
    trainer = _FakeTrainer(crash_at)
    final = loop.run(trainer, _FakeEvaluator(), experiment, total, every_eval,
                     every_checkpoint, show_progress=False)
    return experiment, trainer, final


def test_fake_loop_schedule_of_eval_checkpoints_and_summary(tmp_path) -> None:
    experiment, trainer, final = _fake_run(str(tmp_path), total=10)
    rows = _read_csv(experiment.path)
    assert _rounds(rows) == list(range(1, 11)) == trainer.rounds_run
    evaluated = [int(r["round"]) for r in rows if r["test_accuracy"] != ""]
    assert evaluated == [3, 6, 9, 10]
    assert all(r["eval_seconds"] != "" for r in rows if int(r["round"]) in evaluated)
    # Checkpoints at 4, 8 and the end, all three kept; the last is the final state.
    assert experiment.checkpoint_rounds() == [4, 8, 10]
    state = np.array([1.0, 2.0])
    for r in range(1, 11):
        state = 0.9 * state + np.sin(r)
    np.testing.assert_array_equal(experiment.load_checkpoint()[1][0], state)
    summary = results.load_summary(experiment.path)
    assert summary == final and summary["round"] == 10.0
    assert summary["test_accuracy"] == pytest.approx(np.tanh(state[0]) + 1)


def test_fake_loop_resumes_after_a_crash_to_the_same_table(tmp_path) -> None:
    reference, _, _ = _fake_run(str(tmp_path / "ref"), total=10)
    with pytest.raises(RuntimeError):
        _fake_run(str(tmp_path / "crash"), total=10, crash_at=7)
    crashed = str(tmp_path / "crash" / "fake")
    assert _rounds(_read_csv(crashed)) == [1, 2, 3, 4, 5, 6]  # rows 5, 6 after ckpt 4
    assert results.load_summary(crashed) is None
    experiment, trainer, _ = _fake_run(str(tmp_path / "crash"), total=10)
    assert trainer.rounds_run == [5, 6, 7, 8, 9, 10]  # resumed from the checkpoint
    assert _without_seconds(_read_csv(crashed)) == _without_seconds(
        _read_csv(reference.path))
    assert results.load_summary(crashed) is not None


def test_fake_loop_writes_summary_when_only_the_summary_was_lost(tmp_path) -> None:
    experiment, _, final = _fake_run(str(tmp_path), total=6)
    os.remove(os.path.join(experiment.path, results.SUMMARY))  # killed just before it
    _, trainer, again = _fake_run(str(tmp_path), total=6)
    assert trainer.rounds_run == []
    assert again == final
    assert results.load_summary(experiment.path) == final


# ----- train() on the fixture ---------------------------------------------------------
@pytest.fixture(scope="module")
def reference(emnist_dir, tmp_path_factory) -> str:
    """The folder of one uninterrupted run of the base config."""
    from experiments import train

    root = str(tmp_path_factory.mktemp("reference"))
    path, final = train.train(_config(emnist_dir, root))
    assert final and int(final["round"]) == TOTAL
    return path


def test_reference_run_is_complete_and_consistent(reference: str, emnist_dir: str) -> None:
    rows = _read_csv(reference)
    assert list(rows[0]) == PLAIN_COLUMNS
    assert _rounds(rows) == list(range(1, TOTAL + 1))
    for row in rows:
        is_eval = int(row["round"]) % BASE["rounds_per_eval"] == 0
        assert all((row[c] != "") == is_eval for c in EVAL_COLUMNS), row
    # Each round trains on the sampled clients' examples (one local epoch),
    # counted from the SQLite file.
    sizes = [len(e) for e in _examples(emnist_dir, "all_train").values()]
    for row in rows:
        chosen = sampling.sample_clients(len(sizes), 3, BASE["seed"], int(row["round"]))
        assert int(row["train_examples"]) == sum(sizes[i] for i in chosen)
        assert int(row["clients"]) == 3
    # The final eval row is the checkpointed final model, scored in numpy.
    weights = _model_in_checkpoint(reference, TOTAL, TWO_NN_SHAPES)
    _assert_eval_matches(rows[-1], _expected_eval(emnist_dir, weights))
    summary = results.load_summary(reference)
    assert summary is not None and summary["round"] == float(TOTAL)
    assert summary["test_accuracy"] == float(rows[-1]["test_accuracy"])
    assert sorted(os.listdir(os.path.join(reference, results.CHECKPOINTS))) == [
        f"ckpt-{r:06d}.npz" for r in (8, 10, 12)]


def test_same_config_reproduces_metrics_and_another_seed_does_not(
        reference: str, emnist_dir: str, tmp_path) -> None:
    from experiments import train

    again, _ = train.train(_config(emnist_dir, str(tmp_path / "again")))
    expected = _without_seconds(_read_csv(reference))
    assert _without_seconds(_read_csv(again)) == expected
    # The timing columns are really there and excluded on purpose.
    assert any(k.endswith("_seconds") for k in _read_csv(again)[0])

    other, _ = train.train(_config(emnist_dir, str(tmp_path / "seed1"), seed=1,
                                   total_rounds=4))
    rows = _read_csv(other)
    assert _rounds(rows) == [1, 2, 3, 4]
    for mine, theirs in zip(rows, expected, strict=False):
        assert mine["train_loss"] != theirs["train_loss"], mine["round"]
    assert rows[3]["test_loss"] != expected[3]["test_loss"]


def _flags(config: ExperimentConfig) -> list[str]:
    """The command-line flags that describe `config`."""
    args = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value == field.default:
            continue
        if isinstance(value, bool):
            args.append(f"--{field.name}" if value else f"--no{field.name}")
        else:
            args.append(f"--{field.name}={value}")
    return args


def _complete_rows(path: str) -> int:
    """Rows of metrics.csv whose line is complete (the header excluded)."""
    try:
        with open(path, "rb") as f:
            return max(0, f.read().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def _run_until_killed(command: list[str], env: dict, folder: str, log) -> int:
    """Starts the command, SIGKILLs it once an odd number (>= 3) of rows is written."""
    metrics = os.path.join(folder, results.METRICS)
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 240
    try:
        while True:
            rows = _complete_rows(metrics)
            if rows >= 3 and rows % 2 == 1:
                # Round `rows` is not a checkpoint round: its row is newer than
                # the last checkpoint, so the resume must drop and redo it.
                process.send_signal(signal.SIGKILL)
                break
            if process.poll() is not None:
                pytest.fail(f"the run ended (code {process.returncode}) before the "
                            f"kill; make it longer")
            if time.monotonic() > deadline:
                pytest.fail("the run wrote no rows within 240 s")
            time.sleep(0.005)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    return rows


def _kill_and_resume(config: ExperimentConfig, tmp_path) -> str:
    """Runs `config` as a user would, SIGKILLs it mid-run (rows newer than its last
    checkpoint), runs the same command again; returns the folder."""
    command = [sys.executable, "-m", "experiments.train", *_flags(config)]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    folder = os.path.join(config.root_output_dir, NAME)
    log_path = str(tmp_path / "train.log")
    with open(log_path, "wb") as log:
        killed_at = _run_until_killed(command, env, folder, log)
    experiment = results.Experiment(folder, PLAIN_COLUMNS)
    assert results.load_summary(folder) is None
    assert 3 <= killed_at < TOTAL
    assert max(experiment.checkpoint_rounds(), default=0) < len(experiment.read_rows())

    with open(log_path, "ab") as log:
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=log, timeout=300)
    with open(log_path, errors="replace") as f:
        assert done.returncode == 0, f.read()[-3000:]
    assert b"results:" in done.stdout
    rows = _read_csv(folder)
    assert _rounds(rows) == list(range(1, TOTAL + 1))  # none missing or duplicated
    summary = results.load_summary(folder)
    assert summary is not None and summary["round"] == float(TOTAL)
    assert len(results.load_hparams(folder)["resumed_at"]) == 1
    return folder


def test_killed_run_resumes_to_the_uninterrupted_result(
        reference: str, emnist_dir: str, tmp_path) -> None:
    folder = _kill_and_resume(_config(emnist_dir, str(tmp_path / "killed")), tmp_path)
    assert _without_seconds(_read_csv(folder)) == _without_seconds(_read_csv(reference))


def test_killed_scaffold_run_resumes_with_its_clients_states(emnist_dir: str,
                                                             tmp_path) -> None:
    """Stateful clients: the control variates saved with each checkpoint are the ones
    the uninterrupted run had, so the resumed rows are identical."""
    from experiments import train

    config = _config(emnist_dir, str(tmp_path / "whole"), algorithm="scaffold")
    whole, _ = train.train(config)
    folder = _kill_and_resume(dataclasses.replace(
        config, root_output_dir=str(tmp_path / "killed")), tmp_path)
    assert _without_seconds(_read_csv(folder)) == _without_seconds(_read_csv(whole))
    data = results.load_hparams(folder)["data"]
    assert data["client_state"] == "scaffold control variates"
    per_client = sum(int(np.prod(s)) for s in TWO_NN_SHAPES) * 4 / 2 ** 20  # float32 c_i
    assert data["client_state_mib_per_client"] == pytest.approx(per_client)
    assert data["client_state_mib_at_most"] == pytest.approx(per_client * data["train_clients"])


def test_repeated_random_kills_still_give_the_uninterrupted_result(
        reference: str, emnist_dir: str, tmp_path) -> None:
    """SIGKILL at seeded random moments (rows, checkpoints and CSV being written)."""
    root = str(tmp_path / "killed_often")
    command = [sys.executable, "-m", "experiments.train",
               *_flags(_config(emnist_dir, root, rounds_per_checkpoint=3))]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    metrics = os.path.join(root, NAME, results.METRICS)
    rng = random.Random(7)
    kills = 0
    with open(tmp_path / "train.log", "wb") as log:
        for _ in range(4):
            before = _complete_rows(metrics) if os.path.exists(metrics) else 0
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
            deadline = time.monotonic() + 240
            while (process.poll() is None and time.monotonic() < deadline and
                   (not os.path.exists(metrics) or _complete_rows(metrics) <= before)):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.6))  # land anywhere inside a round
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait()
            if results.load_summary(os.path.join(root, NAME)) is not None:
                break
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=log, timeout=300)
    assert done.returncode == 0
    assert kills >= 2
    rows = _read_csv(os.path.join(root, NAME))
    assert _rounds(rows) == list(range(1, TOTAL + 1))  # none missing or duplicated
    assert _without_seconds(rows) == _without_seconds(_read_csv(reference))
    json.loads(open(os.path.join(root, NAME, results.HPARAMS)).read())  # not corrupted


def test_other_config_is_refused_and_overwrite_sets_the_old_run_aside(
        reference: str, emnist_dir: str, tmp_path) -> None:
    from experiments import train

    root = str(tmp_path)
    shutil.copytree(reference, os.path.join(root, NAME))
    with open(os.path.join(reference, results.METRICS)) as f:
        old_metrics = f.read()
    with pytest.raises(UsageError) as error:
        train.train(_config(emnist_dir, root, client_learning_rate=0.05))
    message = str(error.value)
    assert "--client_learning_rate" in message and "--overwrite" in message
    assert not [n for n in os.listdir(root) if ".replaced-" in n]

    path, _ = train.train(_config(emnist_dir, root, client_learning_rate=0.05,
                                  total_rounds=2, overwrite=True))
    backups = [n for n in os.listdir(root) if n.startswith(NAME + ".replaced-")]
    assert len(backups) == 1
    with open(os.path.join(root, backups[0], results.METRICS)) as f:
        assert f.read() == old_metrics
    rows = _read_csv(path)
    assert _rounds(rows) == [1, 2]
    assert rows[0]["train_loss"] != _read_csv(reference)[0]["train_loss"]
    assert results.load_hparams(path)["config"]["client_learning_rate"] == 0.05


def test_extending_total_rounds_continues_from_the_checkpoint(
        reference: str, emnist_dir: str, tmp_path) -> None:
    from experiments import train

    root = str(tmp_path)
    path, final = train.train(_config(emnist_dir, root, total_rounds=8))
    assert int(final["round"]) == 8 and results.load_summary(path) is not None
    first = _read_csv(path)

    path, final = train.train(_config(emnist_dir, root))
    rows = _read_csv(path)
    assert _rounds(rows) == list(range(1, TOTAL + 1))
    # Rounds 1-8 were not recomputed: their timing columns are unchanged.
    assert rows[:8] == first
    assert _without_seconds(rows) == _without_seconds(_read_csv(reference))
    assert int(final["round"]) == TOTAL
    assert results.load_summary(path)["round"] == float(TOTAL)
    hparams = results.load_hparams(path)
    assert hparams["config"]["total_rounds"] == TOTAL
    assert len(hparams["resumed_at"]) == 1


def test_centralized_runs_with_eval_columns(emnist_dir: str, tmp_path) -> None:
    from experiments import train

    config = _config(emnist_dir, str(tmp_path), algorithm="centralized", total_rounds=4,
                     client_batch_size=5, experiment_name="central")
    path, final = train.train(config)
    rows = _read_csv(path)
    assert _rounds(rows) == [1, 2, 3, 4]
    # A centralised round sees clients_per_round x mean client size examples.
    sizes = [len(e) for e in _examples(emnist_dir, "all_train").values()]
    steps = int(np.floor(3 * np.mean(sizes) / 5 + 0.5))
    for row in rows:
        assert int(row["train_examples"]) == steps * 5
        assert row["clients"] == row["bytes_down_per_client"] == "0"
        assert row["bytes_up_per_client"] == "0"
        is_eval = int(row["round"]) % 2 == 0
        assert all((row[c] != "") == is_eval for c in EVAL_COLUMNS)
    weights = _model_in_checkpoint(path, 4, TWO_NN_SHAPES)
    _assert_eval_matches(rows[-1], _expected_eval(emnist_dir, weights))
    assert final["test_accuracy"] == float(rows[-1]["test_accuracy"])
    assert results.load_summary(path) == final

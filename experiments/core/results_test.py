"""Unit tests of the results layout (experiments/core/results.py), without TFF.

The results folder is the only record of an experiment, and resumption
depends on it being readable after a kill at any moment. Checked here:
metrics rows round-trip exactly (floats via repr, blanks for missing / NaN);
a torn last line is ignored by read_rows and removed by truncate_after, so a
later append starts on a clean line; truncate_after drops exactly the rows
after a round; only the last 3 checkpoints are kept and the newest readable
one is loaded, with a corrupted newest checkpoint reported on stderr and
skipped; hparams.json records config, package versions, the git commit and a
UTC start time; a config clash is refused with a message naming the flag and
--overwrite, and --overwrite sets the old folder aside intact; a metrics
file of another layout keeps every column it has and gains the new ones.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import io
import json
import math
import os
import platform
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest

from experiments.core import results
from experiments.core.errors import UsageError

COLUMNS = ("round", "train_loss", "clients", "test_accuracy", "round_seconds")
CONFIG = {"model": "logistic", "client_learning_rate": 0.1, "total_rounds": 10, "seed": 0}
RESUMABLE = frozenset({"total_rounds"})


def _open(root: str, config: dict | None = None, columns=COLUMNS, overwrite: bool = False,
          name: str = "exp") -> results.Experiment:
    return results.Experiment.open(root, name, CONFIG if config is None else config,
                                   columns, overwrite=overwrite, resumable=RESUMABLE)


def _row(round_num: int) -> dict:
    return {"round": round_num, "train_loss": 1.0 / (round_num + 2), "clients": 3,
            "test_accuracy": 0.1 * round_num if round_num % 2 == 0 else None,
            "round_seconds": 0.25}


def _metrics_text(exp: results.Experiment) -> str:
    with open(os.path.join(exp.path, results.METRICS)) as f:
        return f.read()


# ----- metrics.csv -------------------------------------------------------------
def test_new_experiment_has_header_only(tmp_path) -> None:
    exp = _open(str(tmp_path))
    assert exp.path == os.path.join(str(tmp_path), "exp")
    assert _metrics_text(exp) == ",".join(COLUMNS) + "\n"
    assert exp.read_header() == list(COLUMNS)
    assert exp.read_rows() == []
    assert exp.checkpoint_rounds() == []
    assert exp.load_checkpoint() is None


def test_append_and_read_round_trip(tmp_path) -> None:
    exp = _open(str(tmp_path))
    values = [1 / 3, 1e-300, 123456789.123456789, -0.0]
    for i, v in enumerate(values, start=1):
        exp.append({"round": i, "train_loss": v, "clients": 10, "round_seconds": None,
                    "test_accuracy": math.nan})
    rows = exp.read_rows()
    assert [int(r["round"]) for r in rows] == [1, 2, 3, 4]
    # Floats are written with repr, so they read back bit for bit.
    assert [float(r["train_loss"]) for r in rows] == values
    assert all(r["clients"] == "10" for r in rows)
    # Missing keys, None and NaN are all blank.
    assert all(r["test_accuracy"] == "" and r["round_seconds"] == "" for r in rows)
    assert _metrics_text(exp).splitlines()[1] == "1,0.3333333333333333,10,,"


def test_append_rejects_unknown_columns_and_writes_nothing(tmp_path) -> None:
    exp = _open(str(tmp_path))
    before = _metrics_text(exp)
    with pytest.raises(ValueError, match="not_a_column"):
        exp.append({"round": 1, "not_a_column": 2.0})
    assert _metrics_text(exp) == before


def test_torn_last_line_is_ignored_then_dropped_by_truncate(tmp_path) -> None:
    exp = _open(str(tmp_path))
    exp.append(_row(1))
    exp.append(_row(2))
    # A kill in the middle of an append leaves a partial line without "\n".
    with open(os.path.join(exp.path, results.METRICS), "a") as f:
        f.write("3,0.987")
    assert [r["round"] for r in exp.read_rows()] == ["1", "2"]
    # The loop truncates before appending on resume: the fragment must go,
    # or the next row would be glued onto it.
    exp.truncate_after(100)
    assert _metrics_text(exp).endswith("\n")
    assert "0.987" not in _metrics_text(exp)
    exp.append(_row(3))
    rows = exp.read_rows()
    assert [r["round"] for r in rows] == ["1", "2", "3"]
    assert float(rows[2]["train_loss"]) == _row(3)["train_loss"]


def test_truncate_after_keeps_rows_up_to_the_round(tmp_path) -> None:
    exp = _open(str(tmp_path))
    for r in range(1, 8):
        exp.append(_row(r))
    exp.truncate_after(4)
    assert [int(r["round"]) for r in exp.read_rows()] == [1, 2, 3, 4]
    assert exp.read_header() == list(COLUMNS)
    exp.truncate_after(0)
    assert exp.read_rows() == []
    assert _metrics_text(exp) == ",".join(COLUMNS) + "\n"


def test_load_metrics_parses_numbers_and_blanks(tmp_path) -> None:
    exp = _open(str(tmp_path))
    for r in range(1, 5):
        exp.append(_row(r))
    frame = results.load_metrics(exp.path)
    assert list(frame.columns) == list(COLUMNS)
    assert frame["round"].tolist() == [1, 2, 3, 4]
    # pandas' default float parser may be 1 ulp off the repr written.
    np.testing.assert_allclose(frame["train_loss"], [1 / 3, 1 / 4, 1 / 5, 1 / 6], rtol=1e-15)
    assert frame["test_accuracy"].isna().tolist() == [True, False, True, False]


def test_an_older_layout_with_more_columns_keeps_them(tmp_path) -> None:
    exp = _open(str(tmp_path))
    exp.append(_row(1))
    fewer = _open(str(tmp_path), columns=COLUMNS[:-1])  # a newer version leaves one out
    assert fewer.columns == list(COLUMNS) and fewer.read_header() == list(COLUMNS)
    fewer.append({k: v for k, v in _row(2).items() if k != COLUMNS[-1]})
    rows = fewer.read_rows()
    assert [r["round"] for r in rows] == ["1", "2"] and rows[1][COLUMNS[-1]] == ""
    other = _open(str(tmp_path), columns=COLUMNS[:2] + ("new_metric",))  # neither: union
    assert other.columns == list(COLUMNS[:2]) + ["new_metric"] + list(COLUMNS[2:])
    assert [r["round"] for r in other.read_rows()] == ["1", "2"]


def test_a_newer_version_adds_columns_and_settings_and_still_resumes(tmp_path) -> None:
    exp = _open(str(tmp_path))
    exp.append(_row(1))
    exp.append(_row(2))
    newer = results.Experiment.open(
        str(tmp_path), "exp", {**CONFIG, "new_flag": 0.5}, COLUMNS + ("new_metric",),
        resumable=RESUMABLE, defaults={"new_flag": 0.5})
    rows = newer.read_rows()
    assert [r["round"] for r in rows] == ["1", "2"]
    assert rows[1]["test_accuracy"] == str(0.2) and rows[1]["new_metric"] == ""
    with pytest.raises(UsageError, match="new_flag"):  # a non-default value differs
        results.Experiment.open(str(tmp_path), "exp", {**CONFIG, "new_flag": 0.7},
                                COLUMNS + ("new_metric",), resumable=RESUMABLE,
                                defaults={"new_flag": 0.5})


# ----- checkpoints -------------------------------------------------------------
def _state(round_num: int) -> list[np.ndarray]:
    rng = np.random.default_rng(round_num)
    return [rng.normal(size=(3, 4)).astype(np.float32), np.array(round_num, np.int64),
            rng.normal(size=(5,))]


def _assert_state(arrays: list[np.ndarray], round_num: int) -> None:
    expected = _state(round_num)
    assert len(arrays) == len(expected)
    for got, want in zip(arrays, expected, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_checkpoints_keep_only_the_last_three(tmp_path) -> None:
    exp = _open(str(tmp_path))
    for r in (2, 4, 6, 8, 10):
        exp.save_checkpoint(r, _state(r))
    assert exp.checkpoint_rounds() == [6, 8, 10]
    files = sorted(os.listdir(os.path.join(exp.path, results.CHECKPOINTS)))
    assert files == ["ckpt-000006.npz", "ckpt-000008.npz", "ckpt-000010.npz"]
    round_num, arrays = exp.load_checkpoint()
    assert round_num == 10
    _assert_state(arrays, 10)


def _corrupt_newest(exp: results.Experiment, mode: str) -> str:
    path = exp._checkpoint_path(exp.checkpoint_rounds()[-1])
    with open(path, "rb") as f:
        good = f.read()
    if mode == "empty":
        bad = b""
    elif mode == "truncated":
        bad = good[: len(good) // 2]
    elif mode == "zeros":
        bad = bytes(len(good))
    elif mode == "garbage":
        bad = np.random.default_rng(0).bytes(len(good))
    elif mode == "flipped_data_byte":  # caught by the zip CRC
        bad = bytearray(good)
        bad[200] ^= 0xFF
        bad = bytes(bad)
    elif mode == "renamed_member":  # one member's name damaged in the zip directory
        directory = good.rfind(b"PK\x01\x02")
        name_at = good.index(b"arr_", directory)
        bad = good[:name_at] + b"arq_" + good[name_at + 4:]
    else:
        raise ValueError(mode)
    with open(path, "wb") as f:
        f.write(bad)
    return path


@pytest.mark.parametrize("mode", [
    "empty", "truncated", "zeros", "garbage", "flipped_data_byte",
    "renamed_member",
])
def test_corrupted_newest_checkpoint_is_reported_and_skipped(tmp_path, capsys, mode) -> None:
    exp = _open(str(tmp_path))
    for r in (3, 6, 9):
        exp.save_checkpoint(r, _state(r))
    bad_path = _corrupt_newest(exp, mode)
    capsys.readouterr()
    round_num, arrays = exp.load_checkpoint()
    assert round_num == 6
    _assert_state(arrays, 6)
    err = capsys.readouterr().err
    assert bad_path in err and "unreadable" in err


def test_no_readable_checkpoint_means_a_fresh_start(tmp_path, capsys) -> None:
    exp = _open(str(tmp_path))
    for r in (1, 2):
        exp.save_checkpoint(r, _state(r))
        _corrupt_newest(exp, "truncated")
    assert exp.load_checkpoint() is None
    assert capsys.readouterr().err.count("unreadable") == 2


def test_checkpoint_write_leaves_no_temporary_files(tmp_path) -> None:
    exp = _open(str(tmp_path))
    exp.save_checkpoint(1, _state(1))
    exp.write_summary({"round": 1.0})
    for folder in (exp.path, os.path.join(exp.path, results.CHECKPOINTS)):
        assert not [n for n in os.listdir(folder) if ".tmp-" in n]


# ----- hparams.json, resume and overwrite ------------------------------------------
def _git_head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=os.path.dirname(__file__)).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def test_hparams_records_config_versions_commit_and_start_time(tmp_path) -> None:
    before = datetime.datetime.now(datetime.UTC)
    exp = _open(str(tmp_path))
    after = datetime.datetime.now(datetime.UTC)
    hparams = results.load_hparams(exp.path)
    assert hparams["config"] == CONFIG
    versions = hparams["versions"]
    assert versions["python"] == platform.python_version()
    assert versions["numpy"] == np.__version__
    assert versions["pandas"] == importlib.metadata.version("pandas")
    assert versions["tensorflow-federated"] == importlib.metadata.version(
        "tensorflow-federated")
    head = _git_head()
    if head is None:
        assert hparams["git_commit"] == "unknown"
    else:
        assert hparams["git_commit"] in (head, head + "+dirty")
    start = datetime.datetime.fromisoformat(hparams["start_time"])
    assert start.utcoffset() == datetime.timedelta(0)
    assert before <= start <= after
    assert hparams["command"] == sys.argv
    # Stored as valid, sorted JSON.
    with open(os.path.join(exp.path, results.HPARAMS)) as f:
        text = f.read()
    assert json.loads(text) == hparams and text.endswith("\n")


def test_resume_with_same_or_resumable_config_keeps_everything(tmp_path) -> None:
    exp = _open(str(tmp_path))
    exp.append(_row(1))
    exp.save_checkpoint(1, _state(1))
    first = results.load_hparams(exp.path)
    again = _open(str(tmp_path))
    extended = _open(str(tmp_path), config={**CONFIG, "total_rounds": 20})
    assert [r["round"] for r in extended.read_rows()] == ["1"]
    assert again.checkpoint_rounds() == [1]
    hparams = results.load_hparams(exp.path)
    assert hparams["start_time"] == first["start_time"]
    assert hparams["git_commit"] == first["git_commit"]
    assert len(hparams["resumed_at"]) == 2
    assert hparams["config"]["total_rounds"] == 20
    assert not [n for n in os.listdir(str(tmp_path)) if ".replaced-" in n]


def test_other_config_is_refused_naming_the_flag(tmp_path) -> None:
    exp = _open(str(tmp_path))
    exp.append(_row(1))
    before = _metrics_text(exp)
    other = {**CONFIG, "client_learning_rate": 0.5, "total_rounds": 99}
    with pytest.raises(UsageError) as error:
        _open(str(tmp_path), config=other)
    message = str(error.value)
    assert "--client_learning_rate" in message and "--overwrite" in message
    assert "--total_rounds" not in message  # resumable: not a difference
    assert "--seed" not in message
    assert _metrics_text(exp) == before
    assert results.load_hparams(exp.path)["config"] == CONFIG


def test_unreadable_hparams_is_refused(tmp_path) -> None:
    exp = _open(str(tmp_path))
    with open(os.path.join(exp.path, results.HPARAMS), "w") as f:
        f.write("{not json")
    with pytest.raises(UsageError, match="hparams.json"):
        _open(str(tmp_path))


def test_overwrite_sets_the_old_folder_aside(tmp_path, capsys) -> None:
    exp = _open(str(tmp_path))
    for r in (1, 2):
        exp.append(_row(r))
    exp.save_checkpoint(2, _state(2))
    exp.write_summary({"round": 2.0})
    old_metrics = _metrics_text(exp)
    other = {**CONFIG, "seed": 1}
    new = _open(str(tmp_path), config=other, overwrite=True)
    backups = [n for n in os.listdir(str(tmp_path)) if n.startswith("exp.replaced-")]
    assert len(backups) == 1
    backup = os.path.join(str(tmp_path), backups[0])
    assert backup in capsys.readouterr().err
    with open(os.path.join(backup, results.METRICS)) as f:
        assert f.read() == old_metrics
    assert results.load_hparams(backup)["config"] == CONFIG
    assert results.load_summary(backup) == {"round": 2.0}
    # The new folder starts from scratch under the new config.
    assert new.read_rows() == [] and new.checkpoint_rounds() == []
    assert results.load_summary(new.path) is None
    assert results.load_hparams(new.path)["config"] == other
    assert "resumed_at" not in results.load_hparams(new.path)


def test_two_overwrites_in_the_same_second(tmp_path, monkeypatch) -> None:
    frozen = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)

    class FrozenDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen

    fake = types.SimpleNamespace(datetime=FrozenDatetime, UTC=datetime.UTC)
    monkeypatch.setattr(results, "datetime", fake)
    _open(str(tmp_path)).append(_row(1))
    _open(str(tmp_path), config={**CONFIG, "seed": 1}, overwrite=True).append(_row(1))
    _open(str(tmp_path), config={**CONFIG, "seed": 2}, overwrite=True)
    assert len([n for n in os.listdir(str(tmp_path)) if ".replaced-" in n]) == 2


# ----- summary ---------------------------------------------------------------------
def test_summary_marks_completion(tmp_path) -> None:
    exp = _open(str(tmp_path))
    assert results.load_summary(exp.path) is None
    exp.write_summary({"round": 5.0, "test_accuracy": 0.5})
    assert results.load_summary(exp.path) == {"round": 5.0, "test_accuracy": 0.5}
    exp.clear_summary()
    exp.clear_summary()  # idempotent
    assert results.load_summary(exp.path) is None


def test_checkpoint_is_a_plain_npz(tmp_path) -> None:
    exp = _open(str(tmp_path))
    exp.save_checkpoint(7, _state(7))
    path = os.path.join(exp.path, results.CHECKPOINTS, "ckpt-000007.npz")
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["arr_0.npy", "arr_1.npy", "arr_2.npy"]
    with open(path, "rb") as f, np.load(io.BytesIO(f.read())) as data:
        _assert_state([data[f"arr_{i}"] for i in range(3)], 7)


def test_sessions_record_their_wall_time(tmp_path, monkeypatch) -> None:
    clock = iter([100.0, 104.5, 110.0, 200.0, 203.0])  # monotonic() at each recording
    monkeypatch.setattr(results.time, "monotonic", lambda: next(clock))
    exp = results.Experiment.open(str(tmp_path), "exp", CONFIG, COLUMNS,
                                  resumable=RESUMABLE, started=90.0)
    exp.save_checkpoint(1, _state(1))  # 100 - 90
    exp.save_checkpoint(2, _state(2))  # 104.5 - 90
    sessions = results.load_hparams(exp.path)["sessions"]
    assert [s["seconds"] for s in sessions] == [14.5]
    again = results.Experiment.open(str(tmp_path), "exp", CONFIG, COLUMNS,
                                    resumable=RESUMABLE, started=105.0)
    again.write_summary({"round": 2.0})  # 110 - 105
    sessions = results.load_hparams(exp.path)["sessions"]
    assert [s["seconds"] for s in sessions] == [14.5, 5.0]
    assert all(s["started"] for s in sessions)

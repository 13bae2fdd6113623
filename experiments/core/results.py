"""The one results layout that training, sweeps and analysis share.

    <root_output_dir>/<experiment_name>/
        hparams.json      every setting, the data used, package versions, git
                          commit, start time, each session's wall time
        metrics.csv       one row per round; eval columns filled on eval rounds
        columns.json      each metrics.csv column's meaning and unit
        summary.json      written only when the run completes (its final row)
        events/           TensorBoard scalars
        checkpoints/      ckpt-<round>.npz, the last few kept

Every file is written atomically (temp file, fsync, rename) or appended a
whole line at a time, so a kill at any moment leaves a readable folder; on
resume, rows newer than the last checkpoint are dropped and recomputed.
Nothing else in the project writes or parses these files.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata

import numpy as np

from experiments.core.errors import UsageError

HPARAMS = "hparams.json"
METRICS = "metrics.csv"
COLUMNS = "columns.json"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
EVENTS = "events"
_KEEP_CHECKPOINTS = 3
_PACKAGES = ("tensorflow", "tensorflow-federated", "tensorflow-privacy",
             "dp-accounting", "numpy", "absl-py", "pandas")


def atomic_write(path: str, data: bytes) -> None:
    """Writes `data` to `path` so that readers see the old or the new file, never half."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # disk full, killed mid-write: leave no half file behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = path  # name the file in the user's error line
        raise
    _fsync_dir(os.path.dirname(path))


def _fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str, value: dict) -> None:
    """Atomically writes a JSON document."""
    atomic_write(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str) -> dict:
    """Reads a JSON document written by this module."""
    with open(path) as f:
        return json.load(f)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    versions = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    """The project's git commit (with '+dirty' for local changes), or 'unknown'."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
            text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
            capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def _format(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


class Experiment:
    """One experiment folder: create or resume it, append rounds, checkpoint."""

    def __init__(self, path: str, columns: Sequence[str], started: float | None = None):
        self.path = path
        self.columns = list(columns)
        self._started = started  # time.monotonic() when this session's work began

    # ----- opening -----------------------------------------------------------
    @classmethod
    def open(cls, root: str, name: str, config: dict, columns: Sequence[str],
             overwrite: bool = False, resumable: frozenset[str] = frozenset(),
             data: dict | None = None, defaults: dict | None = None,
             started: float | None = None) -> Experiment:
        """Creates the folder, or reopens it for resumption if the config matches.

        `started` (a time.monotonic() value: when this session's work began, start-up
        included) makes every checkpoint and the summary record the session's wall
        time in hparams.json's `sessions`, whose sum is the run's wall time.

        A different configuration under an existing name is refused unless
        `overwrite`, in which case the old folder is kept under a dated name.
        Settings an older version did not record match when the new value is
        their default (`defaults`), so adding a feature keeps old runs resumable.
        """
        path = os.path.join(root, name)
        hparams_path = os.path.join(path, HPARAMS)
        if os.path.exists(hparams_path):
            try:
                old = read_json(hparams_path)["config"]
            except (OSError, ValueError, KeyError):
                old = None
            differ = _differences(old, config, resumable, defaults or {})
            if differ and not overwrite:
                raise UsageError(
                    f"{path} holds an experiment with another configuration "
                    f"(differs in {', '.join('--' + d for d in differ)}); choose "
                    f"another --experiment_name, or pass --overwrite to set it aside"
                )
            if differ:
                stamp = datetime.datetime.now(datetime.UTC).strftime(
                    "%Y%m%dT%H%M%SZ")
                backup = f"{path}.replaced-{stamp}"
                n = 1
                while os.path.exists(backup):
                    n += 1
                    backup = f"{path}.replaced-{stamp}-{n}"
                os.replace(path, backup)
                print(f"Moved the old experiment to {backup}", file=sys.stderr)
        experiment = cls(path, columns, started)
        experiment._create_or_resume(config, data or {})
        return experiment

    def _create_or_resume(self, config: dict, data: dict) -> None:
        try:
            os.makedirs(os.path.join(self.path, CHECKPOINTS), exist_ok=True)
        except OSError as e:
            raise UsageError(
                f"--root_output_dir: cannot create {self.path} ({e.strerror})"
            ) from None
        if not os.access(self.path, os.W_OK):
            raise UsageError(f"--root_output_dir: {self.path} is not writable")
        hparams_path = os.path.join(self.path, HPARAMS)
        now = datetime.datetime.now(datetime.UTC).isoformat()
        if os.path.exists(hparams_path):
            done = max(self.checkpoint_rounds(), default=0)
            if config.get("total_rounds", done) < done:
                raise UsageError(
                    f"{self.path} already has {done} rounds; --total_rounds="
                    f"{config['total_rounds']} cannot shrink it (use >= {done}, or "
                    f"another --experiment_name)")
            hparams = read_json(hparams_path)
            hparams.setdefault("resumed_at", []).append(now)
            hparams["config"] = config
        else:
            hparams = {"config": config, "data": data, "versions": package_versions(),
                       "git_commit": git_commit(), "start_time": now,
                       "command": sys.argv}
        if self._started is not None:
            hparams.setdefault("sessions", []).append({"started": now, "seconds": 0.0})
        write_json(hparams_path, hparams)
        if not os.path.exists(os.path.join(self.path, METRICS)):
            self._rewrite_metrics([])
            return
        header = self.read_header()
        if set(self.columns) <= set(header):  # an older layout with more columns: kept
            self.columns = header
        elif header != self.columns:  # new columns, left empty in the rows written
            rows = self._read_rows_as_written()
            self.columns += [c for c in header if c not in self.columns]
            self._rewrite_metrics(rows)

    # ----- metrics -----------------------------------------------------------
    def write_column_dictionary(self, describe) -> None:
        """columns.json: `describe(column)` -> (meaning, unit) for each column."""
        write_json(os.path.join(self.path, COLUMNS), {
            c: dict(zip(("meaning", "unit"), describe(c), strict=True))
            for c in self.columns})

    def read_header(self) -> list[str]:
        """Column names of metrics.csv."""
        with open(os.path.join(self.path, METRICS), newline="") as f:
            return next(csv.reader(f), [])

    def read_rows(self) -> list[dict[str, str]]:
        """Complete rows of metrics.csv (a torn last line is ignored)."""
        return self._complete_rows(len(self.columns))

    def _read_rows_as_written(self) -> list[dict[str, str]]:
        """Complete rows under the file's own header (before adding columns)."""
        return self._complete_rows(len(self.read_header()))

    def _complete_rows(self, width: int) -> list[dict[str, str]]:
        with open(os.path.join(self.path, METRICS), newline="") as f:
            text = f.read()
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        rows = list(csv.DictReader(io.StringIO(text)))
        return [r for r in rows if None not in r and len(r) == width]

    def _rewrite_metrics(self, rows: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
        atomic_write(os.path.join(self.path, METRICS), buffer.getvalue().encode())

    def truncate_after(self, round_num: int) -> None:
        """Drops rows after `round_num` (they are recomputed after a resume)."""
        rows = [r for r in self.read_rows() if int(r["round"]) <= round_num]
        self._rewrite_metrics(rows)

    def append(self, row: dict) -> None:
        """Appends one round's row; unknown keys are an error, missing ones blank."""
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"metrics not in the layout: {sorted(unknown)}")
        line = ",".join(_format(row.get(c)) for c in self.columns) + "\n"
        with open(os.path.join(self.path, METRICS), "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    # ----- checkpoints -------------------------------------------------------
    def _checkpoint_path(self, round_num: int) -> str:
        return os.path.join(self.path, CHECKPOINTS, f"ckpt-{round_num:06d}.npz")

    def checkpoint_rounds(self) -> list[int]:
        """Rounds that have a checkpoint, oldest first."""
        names = os.listdir(os.path.join(self.path, CHECKPOINTS))
        return sorted(int(n[5:11]) for n in names
                      if n.startswith("ckpt-") and n.endswith(".npz"))

    def save_checkpoint(self, round_num: int, arrays: Sequence[np.ndarray]) -> None:
        """Atomically saves the training state after `round_num`; keeps the last few."""
        buffer = io.BytesIO()
        np.savez(buffer, *[np.asarray(a) for a in arrays])
        atomic_write(self._checkpoint_path(round_num), buffer.getvalue())
        for old in self.checkpoint_rounds()[:-_KEEP_CHECKPOINTS]:
            os.remove(self._checkpoint_path(old))
        self._record_session()

    def load_checkpoint(self) -> tuple[int, list[np.ndarray]] | None:
        """The newest readable checkpoint; a corrupted one is reported and skipped."""
        for round_num in reversed(self.checkpoint_rounds()):
            path = self._checkpoint_path(round_num)
            try:
                with np.load(path, allow_pickle=False) as data:
                    arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
                return round_num, arrays
            except Exception as e:  # noqa: BLE001  (any damage: zip, npy header, names)
                print(f"warning: checkpoint {path} is unreadable ({e}); "
                      f"using an older one", file=sys.stderr)
        return None

    # ----- completion --------------------------------------------------------
    def write_summary(self, summary: dict) -> None:
        """Marks the run complete with its final metrics."""
        self._record_session()
        write_json(os.path.join(self.path, SUMMARY), summary)

    def _record_session(self) -> None:
        """This session's wall time so far, in hparams.json (sessions[-1].seconds)."""
        if self._started is None:
            return
        path = os.path.join(self.path, HPARAMS)
        hparams = read_json(path)
        if hparams.get("sessions"):
            hparams["sessions"][-1]["seconds"] = round(time.monotonic() - self._started, 3)
            write_json(path, hparams)

    def clear_summary(self) -> None:
        """Removes the completion mark (the run is being extended)."""
        path = os.path.join(self.path, SUMMARY)
        if os.path.exists(path):
            os.remove(path)

    def log_scalars(self, round_num: int, row: dict) -> None:
        """Writes a row's numeric values as TensorBoard scalars (and, first, the run's
        settings as an HParams summary, so a sweep folder opens in TensorBoard's HParams
        dashboard with every trial's flags beside its latest metrics)."""
        import tensorflow as tf  # here: sweeps and analysis read results without TF

        if not hasattr(self, "_writer"):
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.path, EVENTS))
            with self._writer.as_default(step=0):
                _hparams_summary(self.path)
        with self._writer.as_default(step=round_num):
            for key, value in row.items():
                if key != "round" and isinstance(value, (int, float)) and \
                        not isinstance(value, bool) and math.isfinite(value):
                    tf.summary.scalar(key, value)
        self._writer.flush()


def _hparams_summary(path: str) -> None:
    """The run's settings (scalars and strings of hparams.json's config) as TensorBoard's
    own HParams summary, with the experiment folder's name as the trial id."""
    from tensorboard.plugins.hparams import api as hp  # here: TensorBoard comes with TF

    config = read_json(os.path.join(path, HPARAMS)).get("config", {})
    values = {k: v for k, v in config.items()
              if isinstance(v, (bool, int, float, str)) and not (
                  isinstance(v, float) and not math.isfinite(v))}
    hp.hparams(values, trial_id=os.path.basename(path))


def _differences(old: dict | None, new: dict, resumable: frozenset[str],
                 defaults: dict) -> list[str]:
    if old is None:
        return ["hparams.json (unreadable)"]
    keys = (set(old) | set(new)) - resumable
    return sorted(k for k in keys if old.get(k, defaults.get(k)) != new.get(k))


# ----- reading, for analysis ---------------------------------------------------
def load_metrics(path: str):
    """metrics.csv of the experiment at `path` as a pandas DataFrame."""
    import pandas as pd  # here: only analysis reads metrics into pandas

    return pd.read_csv(os.path.join(path, METRICS), float_precision="round_trip")


def load_hparams(path: str) -> dict:
    """hparams.json of the experiment at `path`."""
    return read_json(os.path.join(path, HPARAMS))


def load_summary(path: str) -> dict | None:
    """summary.json of a completed experiment, or None while it is incomplete."""
    summary = os.path.join(path, SUMMARY)
    return read_json(summary) if os.path.exists(summary) else None

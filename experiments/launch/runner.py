"""Runs a sweep's trials as `python -m experiments.train` processes and records their fate.

At most `max_parallel` trials run at once (locally, or as Ray tasks through a
launcher with the same `start` / `close`); finished trials (summary.json) are
skipped, so a rerun resumes; `sweep_status.json` records each trial's state,
exit code and last stderr line; Ctrl-C / SIGTERM stops every running trial
and records it as interrupted. A lock file keeps two sweeps out of one folder.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import math
import os
import signal
import subprocess
import sys
import time
from typing import Any

from experiments.core import child_processes, results
from experiments.core.errors import UsageError
from experiments.core.paths import REPO_ROOT
from experiments.core.progress import format_duration
from experiments.launch import hparams_view
from experiments.launch.spec import Sweep, Trial

STATUS_FILE = "sweep_status.json"
TRIALS_DIR = ".trials"
LOCK_FILE = ".lock"
TERMINATE_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.2
_STOP_SIGNALS = child_processes.STOP_SIGNALS


class Interrupted(Exception):
    """Raised in the main loop by SIGINT / SIGTERM."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    del frame
    raise Interrupted(signum)


def _last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f.read()[-65536:].splitlines()]
    except OSError:
        return ""
    return next((line for line in reversed(lines) if line), "")


@dataclasses.dataclass
class _Running:
    trial: Trial
    proc: Any  # subprocess.Popen, or anything with its poll/send_signal/wait/kill/returncode
    started: float
    err_path: str


class LocalLauncher:
    """Starts each trial as a subprocess of this sweep (the default launcher)."""

    def start(self, command: list[str], env: dict[str, str], out_path: str,
              err_path: str) -> subprocess.Popen:
        """Starts one trial; the returned object is polled, signalled and waited on."""
        with open(out_path, "w") as out, open(err_path, "w") as err:
            return subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                start_new_session=True, preexec_fn=child_processes.die_with_parent())

    def close(self) -> None:
        """Nothing to release."""


class Runner:
    """Runs a sweep's trials in subprocesses, at most `max_parallel` at a time."""

    def __init__(self, sweep: Sweep, root: str, max_parallel: int, spec_path: str = "",
                 launcher: Any = None):
        self.sweep = sweep
        self.launcher = launcher or LocalLauncher()
        self.dir = os.path.abspath(os.path.join(root, sweep.name))
        self.trials_dir = os.path.join(self.dir, TRIALS_DIR)
        self.max_parallel = max_parallel
        self.spec_path = os.path.abspath(spec_path) if spec_path else ""
        self.status: dict[str, dict] = {}
        self.durations: list[float] = []
        self.running: dict[str, _Running] = {}
        self._tty = sys.stderr.isatty()
        self._last_progress = ""

    # ----- files ------------------------------------------------------------------------
    def _cfg_path(self, trial: Trial) -> str:
        return os.path.join(self.trials_dir, f"{trial.name}.cfg")

    def command(self, trial: Trial) -> list[str]:
        """The train.py command line of a trial."""
        return [sys.executable, "-m", "experiments.train",
                f"--flagfile={self._cfg_path(trial)}"]

    def _write_cfg(self, trial: Trial) -> None:
        text = (f"# Trial {trial.name} of sweep {self.sweep.name}"
                + (f" ({self.spec_path})" if self.spec_path else "") + "\n"
                + "\n".join(trial.flag_lines(self.dir)) + "\n")
        results.atomic_write(self._cfg_path(trial), text.encode())

    def _write_status(self) -> None:
        counts = self._counts()
        results.write_json(os.path.join(self.dir, STATUS_FILE), {
            "sweep": self.sweep.name, "spec": self.spec_path,
            "updated": datetime.datetime.now(datetime.UTC).isoformat(),
            "counts": counts, "trials": self.status})

    def _complete(self, trial: Trial) -> bool:
        return os.path.exists(os.path.join(self.dir, trial.name, results.SUMMARY))

    # ----- progress ---------------------------------------------------------------------
    def _counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("done", "running", "failed", "skipped", "interrupted",
                                "pending"), 0)
        for entry in self.status.values():
            counts[entry["status"]] += 1
        return counts

    def _progress(self, final: bool = False) -> None:
        c = self._counts()
        total = len(self.sweep.trials)
        line = (f"sweep {self.sweep.name}: {c['done'] + c['skipped']}/{total} done, "
                f"{c['running']} running, {c['failed']} failed, {c['skipped']} skipped")
        if c["interrupted"]:
            line += f", {c['interrupted']} interrupted"
        left = c["pending"] + c["running"]
        if self.durations and left:
            mean = sum(self.durations) / len(self.durations)
            eta = mean * math.ceil(left / self.max_parallel)
            line += f", ETA {format_duration(eta)}"
        if line == self._last_progress:
            if final and self._tty:
                sys.stderr.write("\n")
            return
        self._last_progress = line
        if self._tty:
            sys.stderr.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    # ----- trials -----------------------------------------------------------------------
    def _launch(self, trial: Trial) -> None:
        out_path = os.path.join(self.trials_dir, f"{trial.name}.out")
        err_path = os.path.join(self.trials_dir, f"{trial.name}.err")
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"]
                                    if env.get("PYTHONPATH") else "")
        # Signals wait until the trial is registered, so an interrupt always finds
        # (and stops) every trial started; the child unblocks them.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            proc = self.launcher.start(self.command(trial), env, out_path, err_path)
            self.running[trial.name] = _Running(trial, proc, time.monotonic(), err_path)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        self.status[trial.name].update(status="running", exit_code=None, last_stderr="",
                                       started=datetime.datetime.now(
                                           datetime.UTC).isoformat())

    def _reap(self) -> bool:
        """Records trials that exited; True if any did."""
        changed = False
        for name, run in list(self.running.items()):
            code = run.proc.poll()
            if code is None:
                continue
            del self.running[name]
            seconds = time.monotonic() - run.started
            entry = self.status[name]
            entry.update(exit_code=code, seconds=round(seconds, 1))
            if code == 0 and self._complete(run.trial):
                entry.update(status="done", last_stderr="")
                self.durations.append(seconds)
            else:
                last = _last_line(run.err_path)
                if code == 0:
                    last = last or "exited 0 but wrote no summary.json"
                entry.update(status="failed", last_stderr=last)
            changed = True
        return changed

    def _terminate_all(self) -> None:
        for run in self.running.values():
            if run.proc.poll() is None:
                run.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + TERMINATE_TIMEOUT_SECONDS
        for run in self.running.values():
            try:
                run.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()
        for name, run in self.running.items():
            self.status[name].update(
                status="interrupted", exit_code=run.proc.returncode,
                seconds=round(time.monotonic() - run.started, 1),
                last_stderr=_last_line(run.err_path))
        self.running.clear()

    def _loop(self, pending: list[Trial]) -> None:
        queue = list(pending)
        while queue or self.running:
            changed = self._reap()
            while queue and len(self.running) < self.max_parallel:
                self._launch(queue.pop(0))
                changed = True
            if changed:
                self._write_status()
                self._progress()
            time.sleep(POLL_SECONDS)

    def run(self) -> int:
        """Runs the sweep under its lock; the process exit code."""
        try:
            os.makedirs(self.trials_dir, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--root_output_dir: cannot create {self.dir} "
                             f"({e.strerror})") from None
        lock = open(os.path.join(self.dir, LOCK_FILE), "a")
        try:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"another sweep is running in {self.dir} (it holds "
                                 f"{LOCK_FILE}); wait for it to finish") from None
            return self._run_locked()
        finally:
            lock.close()

    def _run_locked(self) -> int:
        hparams_view.write(self.dir, list(dict.fromkeys(
            k for trial in self.sweep.trials for k in trial.varied)))
        pending = []
        for trial in self.sweep.trials:
            self._write_cfg(trial)
            entry = {"status": "pending", "varied": trial.varied,
                     "command": " ".join(self.command(trial)), "exit_code": None,
                     "last_stderr": ""}
            if self._complete(trial):
                entry["status"] = "skipped"
            else:
                pending.append(trial)
            self.status[trial.name] = entry
        self._write_status()
        self._progress()
        handlers = {s: signal.signal(s, _raise_interrupted) for s in _STOP_SIGNALS}
        interrupted = None
        try:
            self._loop(pending)
        except Interrupted as e:
            interrupted = e.signum
            for s in handlers:
                signal.signal(s, signal.SIG_IGN)
            self._terminate_all()
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)
        self._write_status()
        self._progress(final=True)
        self._print_summary(interrupted)
        if interrupted is not None:
            return 128 + interrupted
        return 1 if any(e["status"] == "failed" for e in self.status.values()) else 0

    def _print_summary(self, interrupted: int | None) -> None:
        c = self._counts()
        print(f"sweep {self.sweep.name}: {len(self.sweep.trials)} trials: {c['done']} done, "
              f"{c['skipped']} skipped (already complete), {c['failed']} failed"
              + (f", {c['interrupted']} interrupted" if c["interrupted"] else "")
              + (f", {c['pending']} not started" if c["pending"] else ""))
        for name, entry in self.status.items():
            if entry["status"] in ("failed", "interrupted"):
                print(f"  {entry['status']} (exit {entry['exit_code']}): {name}: "
                      f"{entry['last_stderr']}")
                print(f"    rerun: {entry['command']}")
        if interrupted is not None:
            print(f"interrupted by {signal.Signals(interrupted).name}; run the same "
                  f"command again to resume")
        print(f"status: {os.path.join(self.dir, STATUS_FILE)}")
        print(f"results: {self.dir}  (analysis.runs.load_sweep reads it)")

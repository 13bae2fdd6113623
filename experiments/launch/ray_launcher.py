"""Runs sweep trials as Ray tasks: `python -m experiments.sweep SPEC --launcher=ray`.

Each trial becomes one Ray task reserving `--cpus_per_trial` / `--gpus_per_trial`;
the task runs the same `python -m experiments.train --flagfile=...` command as
the local launcher, as a subprocess, with stdout/stderr to the same `.trials/`
files, so results land in the one results layout. Ray does the scheduling (no
scheduler of ours): the sweep only submits tasks, polls them and cancels them
on Ctrl-C / SIGTERM.

Assumes a shared filesystem: every node sees the checkout, the same Python at
the same path and the sweep's output folder. `--ray_address=''` starts a local
cluster for the sweep (stopped when it ends); otherwise it joins a running
cluster (`ray start --head` on one machine, `ray start --address=HEAD:PORT` on
the others, then `--ray_address=auto` or `HEAD:PORT`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import Any

from experiments.core import child_processes
from experiments.core.errors import UsageError

# Object store of a local cluster: trials exchange no data through Ray.
_LOCAL_OBJECT_STORE_BYTES = 100 * 1024 * 1024
_TERMINATE_TIMEOUT_SECONDS = 60.0
# Driver variables a trial must not inherit: Ray sets them per worker.
_NOT_FORWARDED = ("CUDA_VISIBLE_DEVICES",)


def _import_ray() -> Any:
    try:
        import ray  # here: Ray loads only with --launcher=ray
    except ImportError:
        raise UsageError("--launcher=ray: the ray package is not installed (pip install "
                         "ray==2.52.1, as pinned in requirements.txt)") from None
    return ray


def run_trial(command: list[str], env: dict[str, str], out_path: str, err_path: str) -> int:
    """The body of a Ray task: runs one trial to its end; its exit code.

    Cancelling the task (KeyboardInterrupt in the worker) stops the trial first.
    """
    full_env = dict(os.environ)  # the worker's: Ray sets CUDA_VISIBLE_DEVICES here
    full_env.update(env)
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=full_env, start_new_session=True,
                                preexec_fn=child_processes.die_with_parent())
    try:
        return proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(_TERMINATE_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


class RayTrial:
    """A submitted trial with the part of subprocess.Popen's interface the sweep uses."""

    def __init__(self, ray: Any, ref: Any, err_path: str):
        self._ray, self._ref, self._err_path = ray, ref, err_path
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The trial's exit code once its task has finished, else None."""
        if self.returncode is None:
            ready, _ = self._ray.wait([self._ref], timeout=0)
            if ready:
                self.returncode = self._result()
        return self.returncode

    def _result(self) -> int:
        try:
            return int(self._ray.get(self._ref))
        except self._ray.exceptions.TaskCancelledError:
            return -signal.SIGTERM
        except self._ray.exceptions.RayError as e:
            # The worker or node died: say so where the sweep reads the last line.
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            with open(self._err_path, "a") as err:
                err.write(f"\nray: {type(e).__name__}: {message}\n")
            return 1

    def send_signal(self, signum: int) -> None:
        """Any stop signal cancels the task, which terminates the trial."""
        del signum
        if self.poll() is None:
            self._ray.cancel(self._ref, force=False)

    def wait(self, timeout: float | None = None) -> int:
        """Waits for the task; subprocess.TimeoutExpired if it is still running."""
        if self.returncode is None:
            ready, _ = self._ray.wait([self._ref], timeout=timeout)
            if not ready:
                raise subprocess.TimeoutExpired("ray task", timeout or 0.0)
            self.returncode = self._result()
        return self.returncode

    def kill(self) -> None:
        """Kills the task's worker (the trial gets SIGTERM from its parent's death)."""
        if self.poll() is None:
            self._ray.cancel(self._ref, force=True)


class RayLauncher:
    """Connects to (or starts) a Ray cluster and submits one task per trial."""

    def __init__(self, address: str, cpus_per_trial: float, gpus_per_trial: float):
        self._ray = ray = _import_ray()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self._local = not address
        try:
            if self._local:
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                         object_store_memory=_LOCAL_OBJECT_STORE_BYTES,
                         log_to_driver=False, logging_level=logging.ERROR)
            else:
                ray.init(address=address, log_to_driver=False,
                         logging_level=logging.ERROR)
        except (ConnectionError, ValueError, RuntimeError, OSError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            what = ("--launcher=ray: cannot start a local Ray cluster" if self._local
                    else f"--ray_address={address}: cannot join the Ray cluster")
            raise UsageError(f"{what} ({first})") from None
        total = ray.cluster_resources()
        for name, need in (("CPU", cpus_per_trial), ("GPU", gpus_per_trial)):
            have = float(total.get(name, 0.0))
            if need > have:
                self.close()
                flag = f"--{name.lower()}s_per_trial"
                raise UsageError(f"{flag}={need:g}: the Ray cluster has only {have:g} "
                                 f"{name}s, so no trial could start")
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        self._task = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial,
                                max_retries=0)(run_trial)

    def start(self, command: list[str], env: dict[str, str], out_path: str,
              err_path: str) -> RayTrial:
        """Submits one trial; its handle is polled like a subprocess."""
        forwarded = {k: v for k, v in env.items()
                     if k not in _NOT_FORWARDED and not k.startswith("RAY_")}
        ref = self._task.remote(command, forwarded, out_path, err_path)
        return RayTrial(self._ray, ref, err_path)

    def close(self) -> None:
        """Disconnects; a cluster started for this sweep is stopped with it."""
        if self._ray.is_initialized():
            self._ray.shutdown()

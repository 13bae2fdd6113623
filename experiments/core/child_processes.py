"""Child processes that cannot outlive us: TFF's worker, sweep trials, Ray trials.

Linux's parent-death signal makes the kernel signal a child when the process
that started it dies, even by SIGKILL, so no worker_binary or trial is left
running after a crash.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def die_with_parent(signum: int = signal.SIGTERM, own_group: bool = False
                    ) -> Callable[[], None]:
    """A `preexec_fn` for subprocess.Popen: the child gets `signum` when we die.

    Args:
      signum: what the child gets (SIGKILL for TFF's worker, which holds no
        results; SIGTERM for a trial, which then stops as after a Ctrl-C).
      own_group: put the child in its own process group, so a terminal's
        Ctrl-C reaches us (and we stop it) rather than it directly.
    """

    def preexec() -> None:
        # A parent that blocked the stop signals around the start (to register
        # the child first) passes the mask on; the child takes them again.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        except (OSError, AttributeError):  # not Linux: no parent-death signal
            pass
        if own_group:
            os.setpgid(0, 0)

    return preexec


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Ends a child: SIGTERM, then SIGKILL if it is still there after `timeout`
    seconds; returns once it has exited (safe on one that already has)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

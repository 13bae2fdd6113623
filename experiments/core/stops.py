"""How a binary ends on Ctrl-C or SIGTERM: one line, exit 130 / 143, nothing lost.

A stop is never raised inside arbitrary code (TensorFlow's C++ calls back into
Python; an exception raised there has corrupted the heap). The signal handler
only records the stop; the main thread raises it at safe points (each round),
and a watchdog ends the process after `STOP_GRACE_SECONDS` if it does not get
there. `guarded` runs a binary's body and turns user errors and stops into
their one line.
"""

import atexit
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from experiments.core.errors import UsageError, exit_code, storage_error
from experiments.core.paths import REPO_ROOT

_stop_signal: int | None = None
# (program, hint) for a stop's line: the `guarded` body's, or the binary's from its start.
_guard: tuple[str, str] | None = None
_leaving = threading.Lock()
# How long the main thread has to reach a safe point (the next round) before the
# stop ends the process from the watchdog thread.
STOP_GRACE_SECONDS = 1.0


def request_stop(signum: int) -> bool:
    """Records that the user asked the program to stop (Ctrl-C or SIGTERM).

    The first stop wins (its exit code is reported); True if this was it.
    """
    global _stop_signal
    if _stop_signal is not None:
        return False
    _stop_signal = signum
    return True


def raise_if_stop_requested() -> None:
    """Raises the recorded stop here, at a point where unwinding is safe.

    KeyboardInterrupt for Ctrl-C, SystemExit(128 + signum) for SIGTERM, so
    `finally` blocks run. The training loop calls it every round.
    """
    if _stop_signal == signal.SIGINT:
        raise KeyboardInterrupt
    if _stop_signal is not None:
        raise SystemExit(128 + _stop_signal)


def on_stop_signal(signum, frame) -> None:
    """Signal handler for Ctrl-C and SIGTERM: records the stop and returns.

    Raising here would throw the exception wherever the main thread happens
    to be, including inside TensorFlow's C++ (an eager op's fast path, a
    trace), where it has surfaced as an unrelated TypeError, been swallowed,
    aborted the process ("exception not rethrown") and corrupted the heap
    ("free(): invalid next size"). So the main thread raises it at its next
    safe point (`raise_if_stop_requested`), and if it is not there within
    STOP_GRACE_SECONDS a watchdog thread ends the process with the same line
    and exit code, after the exit handlers (worker stop, stderr drain). Every
    result file is written atomically, so ending there loses nothing written.
    """
    if request_stop(signum):
        threading.Thread(target=_end_after_grace, name="stop-watchdog", daemon=True).start()


def _end_after_grace() -> None:
    time.sleep(STOP_GRACE_SECONDS)
    program, hint = _guard or ("", "")
    _interrupted(program, _stop_signal, hint, mid_line=True)


def _quiet_after_stop(unraisable) -> None:
    """sys.unraisablehook: once a stop is recorded, errors Python cannot raise
    (a `__del__` disposing of a value on the worker the stop has ended) are
    the stop's own debris, not a bug to print a traceback for."""
    if _stop_signal is None:
        sys.__unraisablehook__(unraisable)


RESUMES = "run the same command again to resume"
NOTHING_WRITTEN = "nothing was written"


def _leave(code: int, line: str) -> None:
    """Ends the process after a stop, skipping the interpreter's teardown.

    The exit handlers (worker stop, stderr filter drain) run first and the
    stop's line comes last, after anything the main thread still printed. The
    teardown itself can abort ("exception not rethrown") or hang on
    TensorFlow and gRPC threads still mid-call, so the process ends directly.
    """
    atexit._run_exitfuncs()
    if line:
        print(line, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _stderr_is_terminal() -> bool:
    quiet = sys.modules.get("experiments.core.stderr_filter")  # fd 2 may be its filter pipe
    return quiet.stderr_is_terminal() if quiet else os.isatty(2)


def _interrupted(program: str, signum: int, hint: str, mid_line: bool = False) -> None:
    """Ends the process with the stop's one line; once, whichever thread (the
    main thread at a safe point, or the watchdog) gets here first."""
    if not _leaving.acquire(blocking=False):
        threading.Event().wait()  # the other thread is ending the process
    line = ""
    if program:
        start = "\n" if mid_line and _stderr_is_terminal() else ""  # after a progress bar
        line = f"{start}{program}: interrupted; {hint}"
    _leave(128 + signum, line)


_PACKAGES = ("experiments", "analysis", "tasks")


def binary_name(argv: list[str]) -> str | None:
    """The name of our binary that the command line `argv` runs (`python -m
    experiments.train` -> "train"), or None (pytest, a notebook, a script)."""
    if "-m" in argv[1:-1]:
        module = argv[argv.index("-m", 1) + 1]
    elif len(argv) > 1 and argv[1].endswith(".py"):
        relative = os.path.relpath(os.path.abspath(argv[1]), REPO_ROOT)
        module = relative.removesuffix(".py").replace(os.sep, ".")
    else:
        return None
    package, _, name = module.rpartition(".")
    if package not in _PACKAGES or name.endswith("_test"):
        return None
    return name


def take_stop_signals_early() -> None:
    """Makes one of our binaries honour Ctrl-C and SIGTERM from its first import.

    Importing TensorFlow and TFF takes seconds. A Ctrl-C then would print
    Python's 40-frame KeyboardInterrupt traceback, or be swallowed by jax's
    GC callback and never stop the program; a SIGTERM would kill it without a
    word. Other users of the package (notebooks, tests) keep Python's handling.
    """
    global _guard
    name = binary_name(getattr(sys, "orig_argv", []))
    if name is None:
        return
    _guard = _guard or (name, NOTHING_WRITTEN)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_stop_signal)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, on_stop_signal)


def guarded(program: str, body: Callable[[], None], interrupted: str = RESUMES) -> None:
    """Runs a binary's body; user-fixable failures end as one line, not a traceback.

    UsageError and a full disk exit 2 with `program: error: ...`; Ctrl-C exits
    130 (SIGTERM 143) with the `interrupted` hint (by default: the same command
    resumes), whether the stop is raised at a safe point, ends the process from
    the watchdog (`on_stop_signal`), or made a TFF call fail on its way out.
    Anything else is a bug and keeps its traceback.
    """
    global _guard
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_stop_signal)
    _guard = (program, interrupted)
    sys.unraisablehook = _quiet_after_stop
    try:
        body()
    except UsageError as e:
        print(f"{program}: error: {e}", file=sys.stderr)
        sys.exit(exit_code())
    except OSError as e:
        usage = storage_error(e)
        if usage is None:
            raise
        print(f"{program}: error: {usage}", file=sys.stderr)
        sys.exit(exit_code())
    except KeyboardInterrupt:
        _interrupted(program, _stop_signal or signal.SIGINT, interrupted)
    except (SystemExit, Exception):  # SIGTERM's SystemExit, or a call the stop cut short
        if _stop_signal is None:
            raise
        _interrupted(program, _stop_signal, interrupted)

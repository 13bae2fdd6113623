"""The one exception type for mistakes a user can fix (bad flag, missing file).

Binaries catch it at the top and print its message as a single line with
exit code 2, instead of a long TFF stack trace; `flags_parser` does the same
for absl's own flag errors.
"""

import atexit
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable


class UsageError(Exception):
    """A user-fixable problem; the message names the flag or file and what is valid."""


def exit_code() -> int:
    """Exit status for a UsageError (the absl/argparse convention for bad usage)."""
    return 2


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def storage_error(error: OSError) -> UsageError | None:
    """A disk-full / quota error as a one-line UsageError (None for other OSErrors).

    Writes are atomic, so what was written before stays valid and the run
    resumes from its last checkpoint once there is space.
    """
    if error.errno not in _NO_SPACE:
        return None
    where = error.filename or "the output folder"
    return UsageError(
        f"no space left writing {where} ({error.strerror}); free space or pass another "
        f"--root_output_dir; rounds already written are kept and the same command "
        f"resumes from the last checkpoint")


_stop_signal: int | None = None


def request_stop(signum: int) -> None:
    """Records that the user asked the program to stop (Ctrl-C or SIGTERM).

    Python delivers the resulting exception wherever the main thread happens
    to be; inside TensorFlow's C++ it can surface as an unrelated TypeError
    or be swallowed. The record lets `guarded` and the training loop honour
    the stop regardless.
    """
    global _stop_signal
    _stop_signal = signum


def raise_if_stop_requested() -> None:
    """Raises the interruption now if a stop signal arrived but was swallowed."""
    if _stop_signal == signal.SIGINT:
        raise KeyboardInterrupt
    if _stop_signal is not None:
        raise SystemExit(128 + _stop_signal)


def on_stop_signal(signum, frame) -> None:
    """Signal handler for Ctrl-C and SIGTERM: records the stop, then raises it
    (KeyboardInterrupt, or SystemExit(128 + signum) so `finally` blocks run)."""
    request_stop(signum)
    raise_if_stop_requested()


def _redeliver_swallowed_stop(unraisable) -> None:
    """sys.unraisablehook: a stop raised inside a GC callback or `__del__` is
    swallowed there (Python prints "Exception ignored in ..."); send the signal
    again a moment later, where it can propagate, instead of printing it."""
    stop = _stop_signal
    if stop is not None and isinstance(unraisable.exc_value, KeyboardInterrupt | SystemExit):
        if signal.getsignal(stop) is on_stop_signal:
            threading.Timer(0.01, os.kill, (os.getpid(), stop)).start()
        return
    sys.__unraisablehook__(unraisable)


RESUMES = "run the same command again to resume"
NOTHING_WRITTEN = "nothing was written"


def _leave(code: int) -> None:
    """Ends the process after a stop, skipping the interpreter's teardown.

    By now every `finally` block (checkpoints, the worker's stop) has run. A
    stop that lands while TensorFlow or gRPC threads are mid-call can make the
    teardown abort ("exception not rethrown") or hang, so the exit handlers
    (stderr filter drain, worker stop) run here and the process ends directly.
    """
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _interrupted(program: str, signum: int, hint: str) -> None:
    print(f"{program}: interrupted; {hint}", file=sys.stderr)
    _leave(128 + signum)


def guarded(program: str, body: Callable[[], None], interrupted: str = RESUMES) -> None:
    """Runs a binary's body; user-fixable failures end as one line, not a traceback.

    UsageError and a full disk exit 2 with `program: error: ...`; Ctrl-C exits
    130 (SIGTERM 143) with the `interrupted` hint (by default: the same command resumes),
    even when the interrupt surfaced inside TensorFlow as another exception.
    Anything else is a bug and keeps its traceback.
    """
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_stop_signal)
    sys.unraisablehook = _redeliver_swallowed_stop
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
        _interrupted(program, signal.SIGINT, interrupted)
    except (SystemExit, Exception):  # SIGTERM's SystemExit, or a stop TF converted
        if _stop_signal is None:
            raise
        _interrupted(program, _stop_signal, interrupted)


def flags_parser(program: str) -> Callable[[list[str]], list[str]]:
    """An absl `flags_parser` for app.run that reports bad flags in one line."""
    from absl import flags

    def parse(argv: list[str]) -> list[str]:
        try:
            return flags.FLAGS(argv)
        except flags.CantOpenFlagFileError as e:
            reason = str(e).removeprefix("ERROR:: Unable to open flagfile: ")
            message = (f"--flagfile: cannot read it ({reason}); give the path of a "
                       f"file of --name=value lines")
        except flags.Error as e:
            message = str(e)
            if "Non-boolean argument to boolean flag" in message:
                message = message.split(": ", 1)[0] + " must be true or false"
        print(f"{program}: error: {message}", file=sys.stderr)
        sys.exit(exit_code())

    return parse

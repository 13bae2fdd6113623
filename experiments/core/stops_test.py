"""`stops.guarded`: one-line user errors, and interrupts honoured wherever they land."""

import errno
import gc
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from experiments.core import errors, stops
from experiments.core.paths import REPO_ROOT


def _leave_without_os_exit(code: int, line: str) -> None:
    print(line, file=sys.stderr)
    sys.exit(code)


@pytest.fixture(autouse=True)
def _no_stop_left(monkeypatch):
    monkeypatch.setattr(stops, "_stop_signal", None)
    monkeypatch.setattr(stops, "_leaving", threading.Lock())
    # The real exit skips the interpreter's teardown (os._exit), and the watchdog
    # would end pytest itself; here the stop must come from the body's checks.
    monkeypatch.setattr(stops, "_leave", _leave_without_os_exit)
    monkeypatch.setattr(stops, "STOP_GRACE_SECONDS", 3600.0)
    previous = signal.getsignal(signal.SIGINT)
    # As in a terminal: a background shell (nohup, some CI runners) starts us with
    # SIGINT ignored, and guarded() rightly keeps an ignored SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    yield
    signal.signal(signal.SIGINT, previous)


def _exit_code(body, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        stops.guarded("prog", body)
    return stopped.value.code, capsys.readouterr().err


def test_usage_error_is_one_line_exit_2(capsys):
    def body():
        raise errors.UsageError("--clip must be > 0")
    code, err = _exit_code(body, capsys)
    assert code == 2 and err == "prog: error: --clip must be > 0\n"


def test_disk_full_is_one_line_exit_2(capsys):
    def body():
        raise OSError(errno.ENOSPC, "No space left on device", "/out/metrics.csv")
    code, err = _exit_code(body, capsys)
    assert code == 2 and "/out/metrics.csv" in err and err.count("\n") == 1


def test_other_errors_keep_their_traceback():
    def body():
        raise TypeError("a bug")
    with pytest.raises(TypeError, match="a bug"):
        stops.guarded("prog", body)


def test_ctrl_c_is_not_raised_inside_a_c_call(capsys):
    # The handler runs wherever Python next checks for signals, e.g. inside a
    # callback that C code (here `sorted`, in training TensorFlow's C++) makes;
    # raising there is what corrupted TF's state. It must only record the stop,
    # which the body's next check raises.
    def key(value):
        if value == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return value

    finished = []

    def body():
        finished.append(sorted(range(10**5), key=key)[-1])
        stops.raise_if_stop_requested()

    code, err = _exit_code(body, capsys)
    assert finished == [10**5 - 1], "the stop was raised inside the C call"
    assert code == 130 and err == "prog: interrupted; run the same command again to resume\n"


def test_a_call_failing_after_a_stop_still_exits_130(capsys):
    # The watchdog stops TFF's worker while a call to it is in flight; that
    # call's error is part of the stop, not a bug to show a traceback for.
    def body():
        stops.request_stop(signal.SIGINT)
        raise TypeError("Expected `context` argument in EagerTensor")

    code, err = _exit_code(body, capsys)
    assert code == 130 and "interrupted" in err and "Traceback" not in err


def test_stop_in_a_gc_callback_is_not_swallowed(capsys):
    # An exception raised in a GC callback or __del__ is swallowed ("Exception
    # ignored in ..."); recording instead of raising keeps the stop.
    def collecting(phase, info):
        if phase == "start":
            gc.callbacks.remove(collecting)
            stops.on_stop_signal(signal.SIGINT, None)

    def body():
        gc.callbacks.append(collecting)
        gc.collect()
        stops.raise_if_stop_requested()

    code, err = _exit_code(body, capsys)
    assert code == 130 and "ignored" not in err, err


class _DisposesOnTheWorker:
    def __del__(self):
        raise ConnectionError("Socket closed")  # as TFF's RemoteValue when the worker is gone


def test_errors_in_del_after_a_stop_are_not_printed(capsys):
    def body():
        _DisposesOnTheWorker()
        assert "Socket closed" in capsys.readouterr().err  # before a stop: shown
        stops.request_stop(signal.SIGINT)
        _DisposesOnTheWorker()
        stops.raise_if_stop_requested()

    code, err = _exit_code(body, capsys)
    assert code == 130 and err == "prog: interrupted; run the same command again to resume\n"


def test_first_stop_wins():
    stops.request_stop(signal.SIGTERM)
    stops.request_stop(signal.SIGINT)
    with pytest.raises(SystemExit) as stopped:
        stops.raise_if_stop_requested()
    assert stopped.value.code == 143


def test_swallowed_stop_is_raised_at_the_next_check():
    stops.request_stop(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        stops.raise_if_stop_requested()
    assert stopped.value.code == 143


def test_no_stop_no_raise():
    stops.raise_if_stop_requested()


def test_sigterm_at_a_safe_point_exits_143_in_one_line(capsys):
    def body():
        stops.on_stop_signal(signal.SIGTERM, None)
        stops.raise_if_stop_requested()
    code, err = _exit_code(body, capsys)
    assert code == 143 and err == "prog: interrupted; run the same command again to resume\n"


def _run(body: str, grace: float = 1.0) -> tuple[subprocess.CompletedProcess, float]:
    """Runs `body` (the source of a function `body()`) under guarded, as a binary."""
    script = (
        "import atexit, os, signal, sys, threading, time\n"
        "from experiments.core import stderr_filter, stops\n"
        "stderr_filter.filter_stderr()\n"
        f"stops.STOP_GRACE_SECONDS = {grace}\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # even if ignored
        "atexit.register(lambda: print('exit handlers ran', flush=True))\n"
        "signal.signal(signal.SIGTERM, stops.on_stop_signal)\n"
        + body +
        "stops.guarded('prog', body, stops.NOTHING_WRITTEN)\n")
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    return done, time.monotonic() - began


def test_a_body_that_never_reaches_a_check_is_ended_by_the_watchdog():
    # Stuck in a call (here a sleep; in training a long TFF computation, with a
    # daemon thread as TF's and gRPC's): the stop still ends the program soon,
    # with its line and exit code, after the exit handlers (the worker's stop).
    done, seconds = _run(
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"
        "def body():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n")
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().endswith("prog: interrupted; nothing was written"), done.stderr
    assert done.stdout == "exit handlers ran\n"
    assert seconds < 20, f"took {seconds:.1f} s: the watchdog did not end it"


def test_watchdog_and_main_thread_racing_print_one_line():
    done, _ = _run(
        "def body():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    while True:\n"
        "        stops.raise_if_stop_requested()\n", grace=0.0)
    assert done.returncode == 130, done.stderr
    assert done.stderr.count("interrupted") == 1, done.stderr
    assert done.stdout == "exit handlers ran\n"


@pytest.mark.parametrize("argv, name", [
    (["python", "-m", "experiments.train", "--flagfile=x"], "train"),
    (["python", "-X", "dev", "-m", "analysis.tables"], "tables"),
    (["python", "experiments/bench.py"], "bench"),
    (["python", "-m", "pytest", "experiments"], None),
    (["python", "-m", "experiments.core.errors_test"], None),
    (["python", "-c", "import experiments"], None),
    (["python"], None),
])
def test_binary_name(argv, name):
    assert stops.binary_name(argv) == name


def _catches_sigterm(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stop_while_tensorflow_loads_is_one_line(signum, tmp_path):
    # The handlers are taken at the package's first import, seconds before the
    # binary's main runs; before that fix Ctrl-C here printed a long traceback.
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.train", f"--root_output_dir={tmp_path}"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while not _catches_sigterm(process.pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    with open(f"/proc/{process.pid}/maps") as f:
        tensorflow_loaded = "_pywrap_tensorflow_internal" in f.read()
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert not tensorflow_loaded, "the handlers came only after TensorFlow had loaded"
    assert process.returncode == 128 + signum, err
    assert err == "train: interrupted; nothing was written\n", err

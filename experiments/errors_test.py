"""`errors.guarded`: one-line user errors, and interrupts honoured wherever they land."""

import errno
import gc
import os
import signal
import subprocess
import sys
import time

import pytest

from experiments import errors


@pytest.fixture(autouse=True)
def _no_stop_left(monkeypatch):
    monkeypatch.setattr(errors, "_stop_signal", None)
    # The real exit skips the interpreter's teardown (os._exit); here it must not.
    monkeypatch.setattr(errors, "_leave", lambda code: sys.exit(code))
    previous = signal.getsignal(signal.SIGINT)
    # As in a terminal: a background shell (nohup, some CI runners) starts us with
    # SIGINT ignored, and guarded() rightly keeps an ignored SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    yield
    signal.signal(signal.SIGINT, previous)


def _exit_code(body, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        errors.guarded("prog", body)
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
        errors.guarded("prog", body)


def test_ctrl_c_turned_into_another_exception_still_exits_130(capsys):
    # TensorFlow's C++ can turn the KeyboardInterrupt raised by the SIGINT
    # handler into e.g. "TypeError: Expected `context` argument ...".
    def body():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10**6):
                pass
        except KeyboardInterrupt:
            raise TypeError("Expected `context` argument in EagerTensor") from None
    code, err = _exit_code(body, capsys)
    assert code == 130 and "interrupted" in err and "Traceback" not in err


def test_ctrl_c_landing_in_a_gc_callback_is_delivered_again(capsys):
    # Python swallows an exception raised in a GC callback or __del__ and prints
    # "Exception ignored in ..."; the stop must still end the program, quietly.
    def collecting(phase, info):
        if phase == "start":
            gc.callbacks.remove(collecting)
            errors.on_stop_signal(signal.SIGINT, None)

    delivered = []

    def body():
        gc.callbacks.append(collecting)
        gc.collect()
        deadline = time.monotonic() + 5
        try:
            while time.monotonic() < deadline:
                pass
        except KeyboardInterrupt:
            delivered.append(True)
            raise
    code, err = _exit_code(body, capsys)
    assert delivered, "the swallowed Ctrl-C was not delivered again"
    assert code == 130 and "Traceback" not in err and "ignored" not in err, err


def test_swallowed_stop_is_raised_at_the_next_check():
    errors.request_stop(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        errors.raise_if_stop_requested()
    assert stopped.value.code == 143


def test_no_stop_no_raise():
    errors.raise_if_stop_requested()


def test_sigterm_turned_into_system_exit_exits_143_in_one_line(capsys):
    def body():
        errors.on_stop_signal(signal.SIGTERM, None)
    code, err = _exit_code(body, capsys)
    assert code == 143 and err == "prog: interrupted; run the same command again to resume\n"


def test_a_real_interrupted_exit_skips_teardown_but_keeps_its_line(tmp_path):
    # A daemon thread stuck in a call would make a normal teardown wait or abort;
    # the stop's exit code and message must come out regardless.
    script = (
        "import os, signal, sys, threading, time\n"
        "from experiments import errors, quiet_tf\n"
        "quiet_tf.filter_stderr()\n"
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"
        "def body():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(5)\n"
        "signal.signal(signal.SIGTERM, errors.on_stop_signal)\n"
        "errors.guarded('prog', body, errors.NOTHING_WRITTEN)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().endswith("prog: interrupted; nothing was written"), done.stderr

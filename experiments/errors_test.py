"""`errors.guarded`: one-line user errors, and interrupts honoured wherever they land."""

import errno
import os
import signal

import pytest

from experiments import errors


@pytest.fixture(autouse=True)
def _no_stop_left(monkeypatch):
    monkeypatch.setattr(errors, "_stop_signal", None)
    previous = signal.getsignal(signal.SIGINT)
    # As in a terminal: a background shell (nohup, some CI runners) starts us with
    # SIGINT ignored, and guarded() rightly keeps an ignored SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
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


def test_swallowed_stop_is_raised_at_the_next_check():
    errors.request_stop(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        errors.raise_if_stop_requested()
    assert stopped.value.code == 143


def test_no_stop_no_raise():
    errors.raise_if_stop_requested()

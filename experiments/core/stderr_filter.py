"""Silences TensorFlow's C++ noise without hiding real errors.

TF 2.14 prints INFO/WARNING lines from C++ and, on CPU-only machines, three
ERROR-level lines about cuDNN/cuFFT/cuBLAS factories being registered twice.
Those three are harmless and would alarm users, but TF_CPP_MIN_LOG_LEVEL=3
would also hide genuine C++ errors. So: level 2 by default (a user's own
setting wins), and the import of TensorFlow runs with stderr captured; every
captured line except the known-benign ones is written back to stderr. Importing
this module does not load TensorFlow: it installs an import hook that runs that
quiet import the first time anything imports tensorflow, so a binary can parse
its flags (and answer --help) first.
Binaries also call `filter_stderr()`, which keeps filtering the same benign
lines (and grappler's "Failed to detect the fetch node(s)", printed when TFF
traces DP aggregators, and gRPC's note that it skipped its fork handlers when a
subprocess starts) for the rest of the run.
"""

import atexit
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
import threading

_BENIGN = re.compile(
    r"Unable to register (cuDNN|cuFFT|cuBLAS) factory"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|Could not find cuda drivers"
    r"|oneDNN custom operations are on"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions"
    r"|grappler_item_builder.cc.*Failed to detect the fetch node"
    r"|fork_posix.cc.*Other threads are currently calling into gRPC, skipping fork"
)


def _import_tensorflow_quietly() -> None:
    """Imports tensorflow with C++ start-up noise filtered out of stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        import tensorflow  # noqa: F401
        return
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        released = []

        def release() -> None:
            """Puts stderr back and writes out what TF printed, but the benign lines."""
            if released:
                return
            released.append(True)
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not _BENIGN.search(line):
                    print(line, file=sys.stderr)

        atexit.register(release)  # a stop ending the process mid-import: its line shows
        try:
            import tensorflow  # noqa: F401
        finally:
            atexit.unregister(release)
            release()


class _QuietTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `tensorflow` once: imports it quietly, then hands the import system the
    module already loaded (so it is executed exactly once)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        _import_tensorflow_quietly()
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return sys.modules["tensorflow"]

    def exec_module(self, module) -> None:
        """Already executed by the quiet import."""


_STATE: dict[str, bool] = {}


def stderr_is_terminal() -> bool:
    """Whether the user's stderr is a terminal (also once fd 2 is our filter pipe)."""
    return _STATE.get("terminal", os.isatty(2))


def filter_stderr() -> None:
    """Routes fd 2 through a filter that drops the known-benign C++ lines.

    Everything else (Python tracebacks, our one-line errors, real C++ errors)
    passes through unchanged and in order. At exit the original stderr is put
    back and what is left in the pipe is drained.
    """
    if getattr(filter_stderr, "installed", False):
        return
    try:
        sys.stderr.flush()
        _STATE["terminal"] = os.isatty(2)
        original = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError, AttributeError):
        return
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as source:
            pending = b""
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not _BENIGN.search(line.decode("utf-8", "replace")):
                        os.write(original, line + b"\n")
                if pending.startswith(b"\r"):  # a progress-bar redraw: show it now
                    os.write(original, pending)
                    pending = b""
            if pending:
                os.write(original, pending)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)  # our copy of the pipe's write end is gone now
        thread.join(timeout=2.0)

    atexit.register(restore)
    filter_stderr.installed = True


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "tensorflow" not in sys.modules and not any(
        isinstance(finder, _QuietTensorFlow) for finder in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlow())

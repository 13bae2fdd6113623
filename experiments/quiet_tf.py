"""Silences TensorFlow's C++ start-up noise without hiding real errors.

TF 2.14 prints INFO/WARNING lines from C++ and, on CPU-only machines, three
ERROR-level lines about cuDNN/cuFFT/cuBLAS factories being registered twice.
Those three are harmless and would alarm users, but TF_CPP_MIN_LOG_LEVEL=3
would also hide genuine C++ errors. So: level 2 by default (a user's own
setting wins), and the import of TensorFlow runs with stderr captured; every
captured line except the known-benign ones is written back to stderr.
"""

import os
import re
import sys
import tempfile

_BENIGN = re.compile(
    r"Unable to register (cuDNN|cuFFT|cuBLAS) factory"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|Could not find cuda drivers"
    r"|oneDNN custom operations are on"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions"
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
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not _BENIGN.search(line):
                    print(line, file=sys.stderr)


_import_tensorflow_quietly()

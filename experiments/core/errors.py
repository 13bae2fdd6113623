"""Mistakes a user can fix, and how a binary reports them.

UsageError is the one exception type for them (bad flag, missing file, full
disk): binaries catch it at the top (`experiments.core.stops.guarded`) and
print its message as a single line with exit code 2, instead of a long TFF
stack trace.
"""

import errno


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

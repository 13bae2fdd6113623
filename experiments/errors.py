"""The one exception type for mistakes a user can fix (bad flag, missing file).

Binaries catch it at the top and print its message as a single line with
exit code 2, instead of a long TFF stack trace.
"""


class UsageError(Exception):
    """A user-fixable problem; the message names the flag or file and what is valid."""


def exit_code() -> int:
    """Exit status for a UsageError (the absl/argparse convention for bad usage)."""
    return 2

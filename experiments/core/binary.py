"""The one opening every binary shares: flags, stderr filter, verbosity, guarded exit.

    def _body() -> None: ...
    if __name__ == "__main__":
        binary.run("train", _body)

Bad flags, a flagfile that cannot be read and unexpected positional arguments
end with one line `program: error: ...` and exit code 2; the body runs inside
`stops.guarded`, so user errors and Ctrl-C / SIGTERM end as one line too.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from absl import app, flags, logging

from experiments.core import stderr_filter, stops
from experiments.core.errors import exit_code

HELP_FLAGS = ("--help", "-help", "--helpshort", "-helpshort", "--helpfull", "-helpfull",
              "-?", "--helpxml")


def asks_for_help(argv: list[str]) -> bool:
    """Whether the command line asks for the flags' help (absl's --help family)."""
    return any(arg.split("=")[0] in HELP_FLAGS for arg in argv[1:])


def flags_parser(program: str) -> Callable[[list[str]], list[str]]:
    """An absl `flags_parser` for app.run that reports bad flags in one line and ends
    --help (which absl ends with exit code 1) with 0: asking for help is no error."""

    def parse(argv: list[str]) -> list[str]:
        try:
            return flags.FLAGS(argv)
        except SystemExit:
            if asks_for_help(argv):
                sys.exit(0)
            raise
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


def usage_exit(program: str, message: str) -> None:
    """Ends the binary with `program: error: message` and exit code 2."""
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(exit_code())


def run(program: str, body: Callable[[], None], *, interrupted: str = stops.RESUMES,
        tensorflow: bool = True) -> None:
    """Parses the flags and runs `body` as the binary `program`.

    Args:
      program: the name on the binary's error and interrupt lines.
      body: the work; it reads the parsed flags itself.
      interrupted: the hint after `program: interrupted;` (whether a rerun resumes).
      tensorflow: the binary loads TensorFlow: filter TF's benign stderr noise
        and lower absl's verbosity to warnings unless --verbosity was given.
    """

    if tensorflow and not asks_for_help(sys.argv):
        # Before absl parses the flags, as at the package's import before: TF 2.14
        # imported inside app.run's main breaks Keras (Flatten gets a None shape). A
        # stop meanwhile ends as "nothing was written" (experiments/__init__.py);
        # --help skips it and answers at once.
        importlib.import_module("tensorflow")

    def main(argv: list[str]) -> None:
        if tensorflow:
            stderr_filter.filter_stderr()
            if not flags.FLAGS["verbosity"].present:
                logging.set_verbosity(logging.WARNING)  # TFF's INFO lines are noise to users
        if len(argv) > 1:
            usage_exit(program, f"unexpected arguments {argv[1:]}; flags look like "
                                f"--name=value")
        stops.guarded(program, body, interrupted)

    app.run(main, flags_parser=flags_parser(program))


def run_with_arguments(program: str, body: Callable[[list[str]], None], usage: str,
                       count: int | None, *, interrupted: str = stops.RESUMES) -> None:
    """Like `run` (without TensorFlow) for a binary taking `count` positional arguments
    (None: one or more).

    A different number ends with `program: error: usage` and exit code 2.
    """

    def main(argv: list[str]) -> None:
        if len(argv) < 2 or (count is not None and len(argv) != count + 1):
            usage_exit(program, usage)
        stops.guarded(program, lambda: body(argv[1:]), interrupted)

    app.run(main, flags_parser=flags_parser(program))

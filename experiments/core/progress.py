"""Progress reporting for long runs: a bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time

from experiments.core import stderr_filter


def format_duration(seconds: float) -> str:
    """`1h05m` over an hour, else `4m07s`: the one way durations are shown."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """Shows round, latest test metric, epsilon (DP runs) and ETA.

    On a terminal it is a tqdm bar on stderr; in logs (CI, pipes) it prints one
    line per eval round instead of carriage-return noise.
    """

    def __init__(self, total: int, start: int, enabled: bool = True,
                 metric: str = "test_accuracy"):
        self._total = total
        self._metric = metric
        self._done_at_start = start
        self._started = time.monotonic()
        self._bar = None
        self._enabled = enabled
        if enabled and stderr_filter.stderr_is_terminal():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=start, unit="round",
                             dynamic_ncols=True, file=sys.stderr)

    def update(self, round_num: int, accuracy: float | None,
               epsilon: float | None = None) -> None:
        """Records that `round_num` finished, with the latest test metric and, for a DP
        run, the epsilon spent so far."""
        shown = {}
        if accuracy is not None:
            shown[self._metric] = f"{accuracy:.4f}"
        if epsilon is not None and epsilon == epsilon:  # NaN: not accounted this round
            shown["epsilon"] = f"{epsilon:.3g}"
        if self._bar is not None:
            self._bar.update(1)
            if shown:
                self._bar.set_postfix(shown)
            return
        if not self._enabled or accuracy is None:
            return
        elapsed = time.monotonic() - self._started
        per_round = elapsed / max(1, round_num - self._done_at_start)
        eta = per_round * (self._total - round_num)
        values = "  ".join(f"{name} {value}" for name, value in shown.items())
        print(f"round {round_num}/{self._total}  {values}  "
              f"{per_round:.2f} s/round  ETA {format_duration(eta)}", file=sys.stderr,
              flush=True)

    def close(self) -> None:
        """Finishes the bar."""
        if self._bar is not None:
            self._bar.close()

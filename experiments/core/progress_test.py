"""The progress line names the metric and, in DP runs, the epsilon spent so far."""

from __future__ import annotations

from experiments.core.progress import Progress


def test_lines_show_the_metric_and_epsilon(capsys) -> None:
    progress = Progress(10, 0, enabled=True)  # pytest's stderr is no terminal: lines
    progress.update(1, 0.5, 2.5)
    progress.update(2, 0.6, float("nan"))  # not accounted this round
    progress.update(3, None, 3.0)  # no eval this round: no line
    progress.update(4, 0.7)  # no DP
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("round 1/10  test_accuracy 0.5000  epsilon 2.5  ")
    assert "epsilon" not in lines[1] and "epsilon" not in lines[2]
    assert lines[2].startswith("round 4/10  test_accuracy 0.7000  ")

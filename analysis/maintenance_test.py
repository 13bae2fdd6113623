"""analysis.maintenance: failures and wasted cycles of each strategy, on a hand-made fleet."""

from __future__ import annotations

import numpy as np

from analysis import maintenance


def _engine(life: int, predicted_life: float) -> tuple[np.ndarray, np.ndarray]:
    """Cycles 1..life and a model that believes the engine fails at `predicted_life`."""
    cycles = np.arange(1, life + 1)
    return cycles, predicted_life - cycles


def test_strategies_on_a_hand_made_fleet() -> None:
    lives = [150, 200, 250]
    good = [_engine(150, 148), _engine(200, 205), _engine(250, 240)]
    # good: maintained at the first cycle with predicted RUL < 10:
    #   139 (wastes 11), 196 (wastes 4), 231 (wastes 19); none fails.
    late = [_engine(150, 170), _engine(200, 230), _engine(250, 255)]
    # late: 161 >= 150 fails, 221 >= 200 fails, 246 < 250 wastes 4.
    rows = maintenance.outcomes(lives, {"good": good, "late": late}, threshold=10,
                                preventative=193)
    by_name = {r.strategy.split(" (")[0]: r for r in rows}
    assert (by_name["corrective"].failed, by_name["corrective"].wasted_cycles) == (3, 0)
    # Preventative at 193: the 150-cycle engine fails; 200 and 250 waste 7 and 57.
    assert (by_name["preventative"].failed, by_name["preventative"].wasted_cycles) == (1, 64)
    assert (by_name["predictive good"].failed,
            by_name["predictive good"].wasted_cycles) == (0, 11 + 4 + 19)
    assert (by_name["predictive late"].failed,
            by_name["predictive late"].wasted_cycles) == (2, 4)
    assert by_name["predictive late"].wasted_per_maintained == 4.0
    table = maintenance.markdown(rows)
    assert table.count("\n") == 1 + len(rows)
    assert "| preventative (at cycle 193) | 3 | 1 | 2 | 64 | 32.0 |" in table


def test_maintenance_at_the_failure_cycle_is_too_late() -> None:
    cycles = np.arange(1, 6)
    assert maintenance.predictive_cycle(cycles, np.array([30, 20, 15, 12, 9])) == 5
    assert maintenance.outcome("x", [5], [5]).failed == 1
    assert maintenance.outcome("x", [5], [4]).wasted_cycles == 1
    assert maintenance.predictive_cycle(cycles, np.full(5, 50.0)) is None

"""The memory pre-check: its estimate against a direct count, and its refusal."""

import numpy as np
import pytest

from experiments.core import resources
from experiments.core.errors import UsageError


def test_estimate_counts_the_largest_capped_cohort():
    sizes = [5, 300, 40, 120, 7]
    need = resources.check_round(2, sizes, cap=100, bytes_per_example=1000,
                                 model_bytes=10_000, budget_mb=1)
    # The two largest clients after capping hold 100 + 100 examples.
    expected = 200 * 1000 * resources.DATA_COPIES + 10_000 * (2 + resources.MODEL_COPIES_EXTRA)
    assert need == expected


def test_over_budget_is_a_usage_error_naming_the_flags():
    with pytest.raises(UsageError) as error:
        resources.check_round(50, [10_000] * 100, cap=None, bytes_per_example=4 * 784,
                              model_bytes=4_000_000, budget_mb=100)
    message = str(error.value)
    for needle in ("--clients_per_round=50", "--max_elements_per_client",
                   "--memory_budget_mb=100", "GiB"):
        assert needle in message
    assert "\n" not in message


def test_example_bytes_and_available_memory():
    x = np.zeros((3, 28, 28, 1), np.float32)
    y = np.zeros((3,), np.int32)
    assert resources.example_bytes(x, y) == 28 * 28 * 4 + 4
    assert resources.available_bytes() > 0

"""Every metrics.csv column has a meaning and a unit; runs leave out what they cannot fill."""

from __future__ import annotations

import json
import os

import pytest

from experiments.aggregators.chain_test import _run
from experiments.core import results
from experiments.training import column_dictionary, loop, personalization
from tasks import scoring


@pytest.mark.parametrize("task_scoring", [scoring.Scoring(), scoring.SequenceScoring(0, ()),
                                          scoring.RegressionScoring(),
                                          scoring.ReconstructionScoring()],
                         ids=lambda s: type(s).__name__)
def test_every_column_any_run_can_write_is_described(task_scoring) -> None:
    extra = personalization.columns(5, task_scoring, own=True)
    for column in loop.columns(task_scoring, extra):
        meaning, unit = column_dictionary.describe(column)
        assert meaning and unit, column
    with pytest.raises(ValueError, match="no meaning recorded"):
        column_dictionary.describe("made_up_column")


def test_a_plain_run_leaves_out_privacy_and_secure_sum_columns(emnist_dir: str,
                                                                tmp_path) -> None:
    plain, rows = _run(emnist_dir, str(tmp_path), client_sampling="uniform")
    header = list(rows[0])
    for column in loop.PRIVACY_COLUMNS + loop.SECAGG_COLUMNS:
        assert column not in header
    with open(os.path.join(plain, results.COLUMNS)) as f:
        described = json.load(f)
    assert set(described) == set(header)
    assert described["bits_up_per_client"]["unit"] == "bits"
    _, dp_rows = _run(emnist_dir, str(tmp_path), dp="fixed", noise_multiplier=1.0,
                      client_sampling="uniform")
    assert set(loop.PRIVACY_COLUMNS) <= set(dp_rows[0])
    assert "secagg_survivors" not in dp_rows[0]

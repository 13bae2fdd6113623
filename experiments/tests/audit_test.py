"""Tests of the memorisation audit: its two arms, and DP lowering exposure on real data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from experiments import audit
from experiments import config as config_lib
from experiments.core import results
from experiments.core.errors import UsageError


def _values(**changes) -> dict:
    values = config_lib.ExperimentConfig(**audit.AUDIT_DEFAULTS).as_dict()
    values.update(changes)
    return values


def test_arms_differ_only_in_dp():
    arms = audit.arms(_values(experiment_name="x"))
    nodp, dp = arms["nodp"], arms["dp"]
    assert (nodp.experiment_name, dp.experiment_name) == ("x_nodp", "x_dp")
    assert (nodp.dp, nodp.noise_multiplier) == ("none", 0.0)
    assert (dp.dp, dp.noise_multiplier, dp.clip) == ("fixed", 0.5, 0.3)
    same = {f.name for f in dataclasses.fields(dp)} - {"dp", "noise_multiplier",
                                                        "experiment_name"}
    assert all(getattr(nodp, n) == getattr(dp, n) for n in same)


@pytest.mark.parametrize("changes,fragment", [
    ({"canaries": 0}, "--canaries must be >= 1"),
    ({"dp": "fixed"}, "--dp=fixed: the audit runs"),
    ({"algorithm": "fedavg"}, "--dp=fixed needs --algorithm=fedavg_unweighted"),
])
def test_bad_audit_flags(changes, fragment):
    with pytest.raises(UsageError) as caught:
        audit.arms(_values(**changes))
    assert fragment in str(caught.value)


@pytest.mark.slow
def test_dp_lowers_canary_exposure(femnist300_dir, tmp_path):
    # Measured with these settings (FEMNIST-300, 2NN, 10 clients, 100 rounds, clip
    # 0.3): inserted-canary exposure 2.61 bits without DP (controls 1.06) and 1.03
    # with z=2.0 (controls 1.34). At z=0.5 the two were equal (2.61), so z=2.0.
    values = _values(data_dir=femnist300_dir, root_output_dir=str(tmp_path),
                     progress=False, total_rounds=100, noise_multiplier=2.0)
    audit.audit(values, str(tmp_path / "audit"))
    found = results.read_json(str(tmp_path / "audit" / "audit.json"))
    inserted, controls = ({a: found[a]["exposure"][g]["mean"] for a in ("nodp", "dp")}
                          for g in ("inserted", "controls"))
    assert inserted["dp"] < inserted["nodp"]
    # The canaries' excess over never-inserted controls (memorisation) shrinks too.
    assert (inserted["dp"] - controls["dp"]) < (inserted["nodp"] - controls["nodp"])


@pytest.mark.slow
def test_dp_lowers_text_canary_exposure(stackexchange_dir, tmp_path):
    # Measured with these settings (SE-Bioinformatics, lstm_small, 10 clients, 60
    # rounds, clip 0.3): "my secret number is" + 6 digits, 10 canaries x 50 copies,
    # exposure among 1,000 random digit strings 3.36 bits without DP (controls
    # 1.06) and 1.74 with z=0.3 (controls 1.45).
    values = _values(task="stackoverflow_word", model="lstm_small",
                     data_dir=stackexchange_dir, root_output_dir=str(tmp_path),
                     progress=False, client_batch_size=16, client_epochs_per_round=2,
                     client_learning_rate=1.0, total_rounds=60, rounds_per_eval=30,
                     noise_multiplier=0.3)
    audit.audit(values, str(tmp_path / "audit"))
    found = results.read_json(str(tmp_path / "audit" / "audit.json"))
    inserted, controls = ({a: found[a]["exposure"][g]["mean"] for a in ("nodp", "dp")}
                          for g in ("inserted", "controls"))
    assert inserted["nodp"] > controls["nodp"] + 1.0  # memorised without DP
    assert inserted["dp"] < inserted["nodp"]
    assert (inserted["dp"] - controls["dp"]) < (inserted["nodp"] - controls["nodp"])


def test_text_audit_uses_the_tasks_own_model_unless_one_is_given():
    text = _values(task="shakespeare_character")
    assert audit.with_task_defaults(text, model_given=False)["model"] == ""
    assert audit.with_task_defaults(text, model_given=True)["model"] == "2nn"
    assert audit.with_task_defaults(_values(), model_given=False)["model"] == "2nn"


def test_canaries_are_refused_for_tasks_without_them():
    with pytest.raises(UsageError) as caught:
        audit.arms(_values(task="heatmap", model=""))
    assert ("--canaries applies to --task=emnist_character|shakespeare_character|"
            "stackoverflow_word (got --task=heatmap)") in str(caught.value)


def _found(text: bool, rounds: int = 3, population: int = 300) -> dict:
    def arm(z, exposures, fits):
        half = len(exposures) // 2
        records = [{"inserted": i < half, "rank": 1 if e > 5 else 9, "exposure": e,
                    **({"exposure_fit": f} if text else {})}
                   for i, (e, f) in enumerate(zip(exposures, fits, strict=True))]
        return {"round": rounds, "clients_per_round": 10, "population": population,
                "data": "FEMNIST-300 (300 writers, 62 classes) character recognition, 2nn",
                "canary_repeats": 50, "seed": 0,
                "noise_multiplier": z, "clip": 0.3, "epsilon_rdp": None if z == 0 else 12.0,
                "test_accuracy": 0.5, "task": "stackoverflow_word" if text
                else "emnist_character", "max_exposure": 9.97 if text else 5.95,
                "exposure": audit._summary(records), "canaries": records}
    return {"nodp": arm(0.0, [9.97, 3.0, 1.0, 0.5], [15.0, 4.0, 1.2, 0.8]),
            "dp": arm(0.5, [1.0, 2.0, 1.0, 0.0], [1.0, 2.0, 1.0, 1.0])}


def test_report_rows_and_fitted_column_for_text():
    text = audit.report(_found(text=True))
    assert ("| nodp (z=0.0, clip=-) | inf | 0.500 | 6.49 / 6.49 / 9.97 | 1 of 2 | 0.75 | "
            "9.50 / 1.00 |") in text
    assert "| dp (z=0.5, clip=0.3) | 12.0 | 0.500 | 1.50 / 1.50 / 2.00 | 0 of 2 | 0.50 | " \
        "1.50 / 1.00 |" in text
    assert "random digit strings" in text and "skew-normal" in text
    image = audit.report(_found(text=False))
    assert "fitted" not in image and "the image with each label" in image
    assert text.startswith("# Memorisation audit\n\nData: FEMNIST-300 (300 writers")
    assert "2 canaries (each 50 copies in one training client)" in text
    assert "3 rounds of 10 clients of 300" in text


def test_small_samples_are_called_inconclusive_by_the_stated_rule():
    small = audit.report(_found(text=False))  # 2 canaries, 3 rounds x 10 / 300 = 0.1
    assert "Too few canaries for a conclusion: 2 < 10" in small
    assert "expected to train 0.10 times" in small
    # 12 canaries, 120 rounds: the no-DP arm's inserted canaries stand out, DP's do not.
    rng = np.random.default_rng(0)
    controls = list(rng.uniform(0, 1, 12))
    nodp, dp = list(rng.uniform(5, 6, 12)) + controls, list(rng.uniform(0, 1, 12)) + controls
    found = {"nodp": _found(False, 120)["nodp"], "dp": _found(False, 120)["dp"]}
    for arm, exposures in (("nodp", nodp), ("dp", dp)):
        found[arm]["canaries"] = [{"inserted": i < 12, "exposure": e, "rank": 1}
                                  for i, e in enumerate(exposures)]
    lines = audit.verdict(found)
    assert not any("Too few" in line for line in lines)
    assert any(line.startswith("- nodp: inserted canaries' mean exposure is above")
               for line in lines)
    assert any(line.startswith("- dp: inserted canaries' mean exposure is within noise")
               for line in lines)
    assert any("The arms differ" in line for line in lines)

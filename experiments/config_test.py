"""Default experiment names: every setting that shapes a run changes the folder name."""

from __future__ import annotations

import dataclasses
import re

import pytest

from experiments.config import RESUMABLE_FIELDS, ExperimentConfig


def _other(field: dataclasses.Field, value):
    """A value of the field's type different from `value`."""
    choices = field.metadata.get("choices")
    if choices:
        return next(c for c in choices if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    return f"{value}x"


def test_the_default_name_is_unchanged() -> None:
    assert ExperimentConfig().name() == "emnist_character_fedavg_seed0"


@pytest.mark.parametrize("field", [f for f in dataclasses.fields(ExperimentConfig)
                                   if f.name not in RESUMABLE_FIELDS
                                   | {"experiment_name", "overwrite", "progress"}],
                         ids=lambda f: f.name)
def test_every_setting_that_shapes_a_run_changes_the_name(field) -> None:
    base = ExperimentConfig()
    changed = dataclasses.replace(base, **{field.name: _other(field, getattr(base,
                                                                             field.name))})
    assert changed.name() != base.name()
    assert re.fullmatch(r"[A-Za-z0-9._-]+", changed.name()), changed.name()


def test_names_are_stable_readable_and_leave_resumable_settings_out() -> None:
    config = ExperimentConfig(algorithm="fedavg_unweighted", model="2nn", dp="fixed",
                              noise_multiplier=1.0, clip=0.3)
    assert config.name() == "emnist_character_fedavg_unweighted_2nn_dp-fixed_z1.0_clip0.3_seed0"
    assert dataclasses.replace(config, noise_multiplier=2.0).name() != config.name()
    for name in RESUMABLE_FIELDS:  # a run resumed with these keeps its folder
        field = next(f for f in dataclasses.fields(ExperimentConfig) if f.name == name)
        other = dataclasses.replace(config, **{name: _other(field, getattr(config, name))})
        assert other.name() == config.name()
    assert ExperimentConfig(experiment_name="mine", dp="fixed").name() == "mine"


def test_a_calibrated_run_is_named_from_its_flags_not_the_calibrated_noise(
        emnist_dir: str, tmp_path) -> None:
    from experiments.aggregators.chain_test import _run

    path, _ = _run(emnist_dir, str(tmp_path), dp="fixed", target_epsilon=30.0,
                   client_sampling="uniform", total_rounds=1, rounds_per_eval=1)
    name = path.rsplit("/", 1)[1]
    assert "_eps30.0_" in name and "_z" not in name  # the calibrated z is not in it

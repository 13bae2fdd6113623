"""Outlier clients, and the split round they and secure_sum run on (tiny EMNIST fixture)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import tensorflow as tf

from experiments.config import ExperimentConfig, validate
from experiments.core import tff_worker
from experiments.core.errors import UsageError
from experiments.simulation import outliers
from experiments.simulation.settings import OutlierSettings


def test_choose_is_seeded_and_counts_round_fraction():
    a = outliers.choose(300, 0.1, seed=3)
    assert a.sum() == 30
    np.testing.assert_array_equal(a, outliers.choose(300, 0.1, seed=3))
    assert not np.array_equal(a, outliers.choose(300, 0.1, seed=4))
    assert outliers.choose(7, 0.0, 0).sum() == 0 and outliers.choose(7, 1.0, 0).all()


def _labels(dataset: tf.data.Dataset) -> np.ndarray:
    return np.concatenate([np.atleast_1d(y.numpy()) for _, y in dataset])


def test_label_corruptions_change_exactly_the_labels():
    y = np.array([0, 1, 5, 61, 61, 30], np.int32)
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((6, 2), np.float32), y)).batch(4)
    np.testing.assert_array_equal(_labels(outliers.flip_labels(ds, 62)), 61 - y)
    np.testing.assert_array_equal(_labels(outliers.constant_labels(ds, 7)), np.full(6, 7))
    flipped = _labels(outliers.flip_labels(ds, 62))
    assert (flipped != y).sum() == 6  # no label in 0..61 is its own flip for C = 62


def test_outliers_corrupt_only_their_own_clients():
    settings = OutlierSettings(outlier_fraction=0.5, outlier_kind="constant_label",
                                        outlier_label=3)
    out = outliers.Outliers(settings, seed=0, population=10, num_classes=10)
    y = np.arange(10, dtype=np.int32)
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((10, 1), np.float32), y)).batch(5)
    changed = [c for c in range(10)
               if not np.array_equal(_labels(out.corrupt_dataset(ds, c)), y)]
    assert changed == list(np.flatnonzero(out.mask)) and len(changed) == 5
    assert out.row([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]) == {"outlier_clients": 5}
    with pytest.raises(UsageError, match="--outlier_label=12"):
        outliers.Outliers(dataclasses.replace(settings, outlier_label=12), 0, 10, 10)


def test_scaled_random_has_scale_times_the_honest_norm_and_a_random_direction():
    rng = np.random.default_rng(0)
    honest = [rng.normal(size=(30, 20)).astype(np.float32), rng.normal(size=7).astype(
        np.float32)]
    bad = outliers.scaled_random(honest, 10.0, np.random.default_rng(1))
    norm = lambda u: np.sqrt(sum(np.sum(np.square(t, dtype=np.float64)) for t in u))  # noqa: E731
    assert norm(bad) == pytest.approx(10 * norm(honest), rel=1e-5)
    flat_h = np.concatenate([t.ravel() for t in honest])
    flat_b = np.concatenate([t.ravel() for t in bad])
    assert abs(np.corrcoef(flat_h, flat_b)[0, 1]) < 0.2


# ----- rounds on the tiny EMNIST fixture ------------------------------------------------
@pytest.fixture(scope="module")
def session() -> Iterator[None]:
    with tff_worker.session():
        yield


@pytest.fixture(scope="module")
def task(emnist_dir, session):
    from tasks import registry

    base = ExperimentConfig(data_dir=emnist_dir, model="logistic", only_digits=False)
    return registry.get(base.task, base.task_config())


def _weights_after(task, rounds: int = 2, **kw) -> tuple[np.ndarray, list[dict]]:
    """The flat global model after `rounds` rounds, and the rounds' metric rows."""
    from experiments.training.federated_trainer import FederatedTrainer

    tff_worker.start()
    kw = {"model": "logistic", "clients_per_round": 4, "algorithm": "fedavg_unweighted",
          "seed": 1, **kw}
    config = ExperimentConfig(data_dir=task.config.data_dir, **kw)
    validate(config)
    trainer = FederatedTrainer(config, task)
    state, rows = trainer.initial_state(), []
    for r in range(1, rounds + 1):
        state, row = trainer.run_round(state, r)
        rows.append(row)
    return np.concatenate([w.ravel() for w in trainer.model_weights(state)]), rows


@pytest.fixture(scope="module")
def honest(task):
    return _weights_after(task)


def test_split_round_equals_the_composed_process(task, honest):
    # secure_sum at 40 bits (quantisation step ~1e-12) is the split round with a
    # lossless aggregator: it must reproduce TFF's composed FedAvg round.
    split, rows = _weights_after(task, aggregator="secure_sum", secagg_bits=40)
    np.testing.assert_allclose(split, honest[0], atol=1e-6)
    assert rows[-1]["train_loss"] == pytest.approx(honest[1][-1]["train_loss"], rel=1e-6)
    assert rows[-1]["secagg_survivors"] == 4


def test_secure_sum_matches_up_to_quantisation_and_reports_cost(task, honest):
    coarse, rows = _weights_after(task, aggregator="secure_sum", secagg_bits=8,
                                  secagg_range=0.5)
    fine, _ = _weights_after(task, aggregator="secure_sum", secagg_bits=16,
                             secagg_range=0.5)
    err_coarse = np.abs(coarse - honest[0]).max()
    err_fine = np.abs(fine - honest[0]).max()
    assert err_fine < 1e-3 < err_coarse < 0.1 and err_fine < err_coarse / 50
    d = 784 * 62 + 62
    m = 8 + 2  # 4 clients -> 2 extra bits
    expected = 128 + 2 * 128 * 3 + m * d + 128 * 3
    assert rows[0]["secagg_bits_up_per_client"] == expected
    assert rows[0]["secagg_extra_bits_up_per_client"] == expected - 32 * d
    assert rows[0]["secagg_messages"] == 4 * 7


def test_secure_sum_dropout_recovers_and_below_threshold_stops(task):
    _, rows = _weights_after(task, rounds=1, aggregator="secure_sum", secagg_dropout=0.25)
    assert rows[0]["secagg_survivors"] == 3
    with pytest.raises(UsageError, match=r"only 2 clients sent .* threshold t=3"):
        _weights_after(task, rounds=1, aggregator="secure_sum", secagg_dropout=0.5,
                       secagg_threshold=0.75)


def test_scaled_random_outliers_pull_the_mean_but_not_the_median(task, honest):
    # One outlier among the fixture's 6 clients: at most 1 of the 4 in a round.
    base = dict(outlier_fraction=0.17, outlier_kind="scaled_random", outlier_scale=20.0)
    pulled, rows = _weights_after(task, **base)
    median_honest, _ = _weights_after(task, aggregator="median")
    median_attacked, _ = _weights_after(task, aggregator="median", **base)
    assert sum(r["outlier_clients"] for r in rows) >= 1
    shift_mean = np.linalg.norm(pulled - honest[0])
    shift_median = np.linalg.norm(median_attacked - median_honest)
    step = np.linalg.norm(honest[0] - _initial(task))
    print(f"honest step {step:.4f}, mean moved {shift_mean:.4f}, median moved "
          f"{shift_median:.4f}")
    assert shift_mean > 2 * step  # the outliers dominate the mean's update
    assert shift_median < 0.5 * shift_mean


def _initial(task) -> np.ndarray:
    model = task.build_model(1)
    return np.concatenate([w.ravel() for w in model.get_weights()])

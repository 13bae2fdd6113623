"""tasks.heatmap: the true map, the users' readings, the knobs, and a short federated run."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.core.errors import UsageError
from tasks import heatmap
from tasks.settings import TaskConfig


def test_true_map_is_seeded_half_hot_and_spatially_smooth() -> None:
    hot = heatmap.true_map(12, seed=0)
    assert hot.shape == (12, 12) and set(np.unique(hot)) == {0, 1}
    assert hot.sum() == 72
    np.testing.assert_array_equal(hot, heatmap.true_map(12, seed=0))
    assert (hot != heatmap.true_map(12, seed=1)).any()
    # Smooth: neighbouring cells mostly agree (a random map would agree half the time).
    agree = np.mean(np.concatenate([(hot[1:] == hot[:-1]).ravel(),
                                    (hot[:, 1:] == hot[:, :-1]).ravel()]))
    assert agree > 0.8


def test_honest_readings_are_the_true_map_and_outliers_always_read_cold() -> None:
    hot = heatmap.true_map(10, seed=3)
    users = heatmap.make_users(hot, users=5, readings=7, spread=1.0, outliers=2,
                               outlier_readings=11, seed=3)
    assert [u.name for u in users] == [f"user_{i:03d}" for i in range(5)] + [
        "outlier_000", "outlier_001"]
    for user in users[:5]:
        cells = user.locations.astype(int)
        assert len(user.labels) == 7 and (cells >= 0).all() and (cells < 10).all()
        np.testing.assert_array_equal(user.labels, hot[cells[:, 0], cells[:, 1]])
        np.testing.assert_array_equal(user.reported, user.locations)
    for user in users[5:]:
        assert len(user.labels) == 11 and (user.labels == heatmap.COLD).all()
    # The outliers and the location noise leave the honest users' true readings alone.
    plain = heatmap.make_users(hot, users=5, readings=7, spread=1.0, seed=3)
    noisy = heatmap.make_users(hot, users=5, readings=7, spread=1.0, location_noise=2.0,
                               seed=3)
    for a, b in zip(plain, noisy, strict=True):
        np.testing.assert_array_equal(a.locations, b.locations)
        np.testing.assert_array_equal(a.labels, b.labels)
        moved = np.linalg.norm(a.locations - b.reported, axis=1)
        assert moved.mean() > 0.5


def test_features_are_gaussian_bumps_on_every_cell() -> None:
    x = heatmap.to_features(np.array([[0.5, 0.5], [2.5, 1.5]]), grid=3)
    assert x.shape == (2, 9)
    assert x[0, 0] == pytest.approx(1.0)
    expected = np.exp(-(2.0 ** 2 + 1.0 ** 2) / (2 * heatmap.RBF_WIDTH ** 2))
    assert x[1, 0] == pytest.approx(expected, rel=1e-6)  # (2.5,1.5) vs centre (0.5,0.5)


def test_task_has_users_as_clients_and_the_map_as_test_data() -> None:
    config = TaskConfig(heatmap_grid=6, heatmap_users=4, heatmap_readings=3,
                        heatmap_outliers=1, heatmap_outlier_readings=5)
    task = heatmap.build_task(config)
    assert task.train_data.client_ids[-1] == "outlier_000"
    assert [task.train_data.num_examples(c) for c in task.train_data.client_ids] == [
        3, 3, 3, 3, 5]
    _, y = task.train_data.arrays("outlier_000")
    assert (y == heatmap.COLD).all()
    hot = heatmap.true_map(6, 0)
    test_y = np.concatenate([task.test_data.arrays(c)[1] for c in task.test_data.client_ids])
    np.testing.assert_array_equal(test_y, hot.ravel())
    assert task.build_model(0).count_params() == 2 * (36 + 1)
    with pytest.raises(UsageError, match="--heatmap_users=0"):
        heatmap.build_task(TaskConfig(heatmap_users=0))


def _central_accuracy(config: TaskConfig) -> float:
    """Full-batch logistic regression in numpy on the pooled readings, scored on the map."""
    task = heatmap.build_task(config)
    x = np.concatenate([task.train_data.arrays(c)[0] for c in task.train_data.client_ids])
    y = np.concatenate([task.train_data.arrays(c)[1] for c in task.train_data.client_ids])
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(300):
        g = 1 / (1 + np.exp(-(x @ w + b))) - y
        w, b = w - 0.5 * x.T @ g / len(y), b - 0.5 * g.mean()
    all_x = np.concatenate([task.test_data.arrays(c)[0] for c in task.test_data.client_ids])
    all_y = np.concatenate([task.test_data.arrays(c)[1] for c in task.test_data.client_ids])
    return float(np.mean(((all_x @ w + b) > 0) == all_y))


def test_the_map_is_learnable_and_one_heavy_outlier_hurts_it() -> None:
    clean = _central_accuracy(TaskConfig())
    spoiled = _central_accuracy(TaskConfig(heatmap_outliers=1, heatmap_outlier_readings=32))
    assert clean > 0.9
    assert spoiled < clean - 0.05



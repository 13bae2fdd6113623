"""tasks.cmapss: loader on hand-made NASA-format files, federated statistics, partition,
naive model; a short federated run on the real data beats the naive model."""

from __future__ import annotations

import lzma
import os

import numpy as np
import pytest

from experiments.core.errors import UsageError
from experiments.core.paths import SHARED_DATA_DIR
from tasks import cmapss
from tasks.settings import TaskConfig

REAL = os.path.join(SHARED_DATA_DIR, "cmapss")


def _rows(unit: int, cycles: int, rng: np.random.Generator) -> list[str]:
    """NASA layout: unit, cycle, 24 numbers, two trailing spaces."""
    lines = []
    for cycle in range(1, cycles + 1):
        values = rng.normal(100.0, 5.0, size=24) + cycle
        lines.append(f"{unit} {cycle} " + " ".join(f"{v:.4f}" for v in values) + "  \n")
    return lines


def _write(folder, stem: str, lines: list[str], xz: bool = False) -> None:
    text = "".join(lines)
    if xz:
        with lzma.open(os.path.join(folder, stem + ".txt.xz"), "wt") as f:
            f.write(text)
    else:
        with open(os.path.join(folder, stem + ".txt"), "w") as f:
            f.write(text)


@pytest.fixture()
def data_dir(tmp_path) -> str:
    """FD001: 6 train engines (.txt.xz) and 4 test engines (.txt), lives 5..14 cycles."""
    rng = np.random.default_rng(0)
    train = [line for u in range(1, 7) for line in _rows(u, 4 + u, rng)]
    test = [line for u in range(1, 5) for line in _rows(u, 10 + u, rng)]
    _write(tmp_path, "train_FD001", train, xz=True)
    _write(tmp_path, "test_FD001", test)
    return str(tmp_path)


def test_engines_are_grouped_by_unit_with_rul_to_the_last_cycle(data_dir) -> None:
    engines = cmapss.load_engines(data_dir, ("FD001",))
    assert [e.name for e in engines] == (
        [f"train_FD001_u{u:03d}" for u in range(1, 7)]
        + [f"test_FD001_u{u:03d}" for u in range(1, 5)])
    assert [e.life for e in engines] == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    table = cmapss.read_table(data_dir, "train_FD001")
    first = engines[0]
    np.testing.assert_array_equal(first.rul, [4, 3, 2, 1, 0])
    np.testing.assert_array_equal(first.features, table[:5, [2, 3, 6, 7, 8, 11, 12, 13, 15,
                                                             16, 17, 18, 19, 21, 24, 25]])
    assert first.features.shape == (5, 16)


def test_wrong_column_count_and_missing_file_are_one_line_errors(data_dir) -> None:
    _write(data_dir, "train_FD003", ["1 1 " + " ".join(["0.5"] * 23) + "\n"])
    with pytest.raises(UsageError, match=r"train_FD003.txt:1 has 25 fields; .* 26"):
        cmapss.read_table(data_dir, "train_FD003")
    with pytest.raises(UsageError, match=r"--data_dir=.* has no train_FD002.txt.xz or "
                                         r"train_FD002.txt"):
        cmapss.load_engines(data_dir, ("FD002",))
    with pytest.raises(UsageError, match="--cmapss_subsets=FD009"):
        cmapss.parse_subsets("FD009")


def test_federated_moments_equal_the_pooled_statistics() -> None:
    rng = np.random.default_rng(1)
    parts = [rng.normal(50, 10, size=(n, 3)) for n in (3, 17, 1, 40)]
    mean, var = cmapss.merge_moments([cmapss.client_moments(p) for p in parts])
    pooled = np.concatenate(parts)
    np.testing.assert_allclose(mean, pooled.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, pooled.var(axis=0), rtol=1e-10)


def test_partition_is_seeded_disjoint_and_complete(data_dir) -> None:
    engines = cmapss.load_engines(data_dir, ("FD001",))
    a, b = (cmapss.split(engines, 3, 2, seed=5) for _ in range(2))
    names = lambda s: [[e.name for e in c] for c in s.clients]  # noqa: E731
    assert names(a) == names(b) and [e.name for e in a.test] == [e.name for e in b.test]
    assert names(a) != names(cmapss.split(engines, 3, 2, seed=6))
    train = [n for c in names(a) for n in c]
    test = [e.name for e in a.test]
    assert len(train) == 6 and len(test) == 4
    assert sorted(train + test) == sorted(e.name for e in engines)
    with pytest.raises(UsageError, match="--cmapss_clients=5 x"):
        cmapss.split(engines, 5, 2, seed=0)


def test_task_standardises_with_training_statistics_and_scores_the_naive_life(
        data_dir) -> None:
    config = TaskConfig(data_dir=data_dir, cmapss_subsets="FD001", cmapss_clients=3,
                        cmapss_engines_per_client=2)
    task = cmapss.build_task(config)
    s = cmapss.load_split(config)
    train_x = np.concatenate([task.train_data.arrays(c)[0] for c in task.train_data.client_ids])
    train_y = np.concatenate([task.train_data.arrays(c)[1] for c in task.train_data.client_ids])
    raw = np.concatenate([e.features for c in s.clients for e in c])
    rul = np.concatenate([e.rul for c in s.clients for e in c])
    np.testing.assert_allclose(train_x, (raw - raw.mean(0)) / raw.std(0), atol=1e-5)
    np.testing.assert_allclose(train_y[:, 0], (rul - rul.mean()) / rul.std(), atol=1e-5)
    assert task.test_data.client_ids == [e.name for e in s.test]
    # Naive: every engine lives the median training life; RMSE in cycles.
    median = np.median([e.life for c in s.clients for e in c])
    cycles = np.concatenate([e.cycles for e in s.test])
    truth = np.concatenate([e.rul for e in s.test])
    expected = np.sqrt(np.mean((np.maximum(median - cycles, 0) - truth) ** 2))
    y = np.concatenate([task.test_data.arrays(c)[1] for c in task.test_data.client_ids])
    naive = task.scoring.naive_outputs(train_y, len(y), (1,))
    pairs = task.scoring.per_example(y, naive)
    assert task.scoring.finish("rmse", pairs["rmse"][0].mean()) == pytest.approx(expected)
    assert task.build_model(0).count_params() == 865


@pytest.mark.slow
def test_real_data_has_the_prototype_engine_and_row_counts() -> None:
    if not os.path.isdir(REAL):
        pytest.skip(f"real data not found: {REAL}")
    engines = cmapss.load_engines(REAL, ("FD001", "FD003"))
    assert len(engines) == 400
    assert sum(e.life for e in engines) == 58_798 + 16_245
    assert np.median([e.life for e in engines]) == 181.5



"""Robust and secure aggregators on toy TFF runs, against numpy / scipy, and their flags."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
from scipy import stats

from experiments.aggregators import chain
from experiments.config import ExperimentConfig, validate
from experiments.core import tff_worker
from experiments.core.errors import UsageError

SHAPES = [(2, 3), (4,)]


@pytest.fixture(scope="module")
def _session() -> Iterator[None]:
    with tff_worker.session():
        yield


@pytest.fixture
def tff(_session):
    tff_worker.start()
    import tensorflow_federated

    return tensorflow_federated


def _config(**kw) -> ExperimentConfig:
    kw.setdefault("algorithm", "fedavg_unweighted")
    return ExperimentConfig(**kw)


def _run(tff, config: ExperimentConfig, values: list[list[np.ndarray]]) -> np.ndarray:
    """The aggregate of `values` (one list of tensors per client), flattened."""
    value_type = tff.StructWithPythonType(
        [tff.TensorType(np.float32, s) for s in SHAPES], list)
    process = chain.build(chain.ChainSettings.of(config)).create(value_type)
    result = process.next(process.initialize(), values).result
    return np.concatenate([np.ravel(np.asarray(t, np.float64)) for t in result])


def _values(n: int, seed: int = 0) -> tuple[list[list[np.ndarray]], np.ndarray]:
    rng = np.random.default_rng(seed)
    values = [[rng.normal(size=s).astype(np.float32) for s in SHAPES] for _ in range(n)]
    values[0] = [v * 1000 for v in values[0]]  # one wild outlier
    flat = np.stack([np.concatenate([np.ravel(t) for t in v]) for v in values]).astype(
        np.float64)
    return values, flat


@pytest.mark.parametrize("n", [5, 6])
def test_median_is_numpy_median_per_coordinate(tff, n):
    values, flat = _values(n)
    got = _run(tff, _config(aggregator="median"), values)
    np.testing.assert_allclose(got, np.median(flat, axis=0), rtol=1e-6, atol=1e-6)
    assert np.max(np.abs(got)) < 5  # the outlier's 1000x values do not show


@pytest.mark.parametrize("n, fraction", [(7, 0.2), (10, 0.1), (6, 0.0)])
def test_trimmed_mean_is_scipy_trim_mean(tff, n, fraction):
    values, flat = _values(n, seed=n)
    got = _run(tff, _config(aggregator="trimmed_mean", trimmed_mean_fraction=fraction),
               values)
    np.testing.assert_allclose(got, stats.trim_mean(flat, fraction, axis=0),
                               rtol=1e-5, atol=1e-5)


def test_norm_clip_is_mean_of_clipped_updates(tff):
    values, flat = _values(5, seed=3)
    norms = np.linalg.norm(flat, axis=1)
    expected = np.mean(flat * np.minimum(1.0, 2.0 / norms)[:, None], axis=0)
    got = _run(tff, _config(aggregator="norm_clip", norm_clip=2.0), values)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_tff_secure_aggregator_runs_in_our_runtime(tff):
    rng = np.random.default_rng(4)
    values = [[(0.01 * rng.normal(size=s)).astype(np.float32) for s in SHAPES]
              for _ in range(4)]
    flat = np.stack([np.concatenate([np.ravel(t) for t in v]) for v in values])
    got = _run(tff, _config(aggregator="tff_secure"), values)
    # Secure sum quantises; its mean matches to well under the values' spread.
    np.testing.assert_allclose(got, flat.mean(axis=0), atol=1e-3)
    assert np.abs(got - flat.mean(axis=0)).max() < 0.1 * np.abs(flat).max()


@pytest.mark.parametrize("kw, flag", [
    (dict(aggregator="median", algorithm="fedavg"), "--aggregator=median"),
    (dict(aggregator="median", dp="fixed"), "--aggregator=median"),
    (dict(trimmed_mean_fraction=0.2), "--trimmed_mean_fraction"),
    (dict(aggregator="trimmed_mean", trimmed_mean_fraction=0.5), "--trimmed_mean_fraction"),
    (dict(aggregator="norm_clip", norm_clip=0.0), "--norm_clip"),
    (dict(aggregator="secure_sum", secagg_bits=1), "--secagg_bits"),
    (dict(aggregator="secure_sum", secagg_threshold=0.0), "--secagg_threshold"),
    (dict(aggregator="secure_sum", secagg_dropout=1.0), "--secagg_dropout"),
    (dict(secagg_dropout=0.1), "--secagg_dropout"),
    (dict(aggregator="secure_sum", algorithm="fedavg"), "--aggregator=secure_sum"),
    (dict(outlier_fraction=1.5), "--outlier_fraction"),
    (dict(outlier_scale=-1.0), "--outlier_scale"),
    (dict(outlier_label=-1), "--outlier_label"),
    (dict(outlier_fraction=0.1, outlier_kind="scaled_random", algorithm="fedprox"),
     "--outlier_kind=scaled_random"),
])
def test_bad_flags_are_one_line_usage_errors(kw, flag):
    config = dataclasses.replace(_config(), **kw)
    with pytest.raises(UsageError) as err:
        validate(config)
    assert flag in str(err.value) and "\n" not in str(err.value)


def test_good_combinations_validate():
    for kw in (dict(aggregator="norm_clip", algorithm="fedavg"),
               dict(aggregator="tff_secure", algorithm="fedavg"),
               dict(aggregator="secure_sum", secagg_dropout=0.3, secagg_bits=8),
               dict(dp="fixed", outlier_fraction=0.2, outlier_kind="scaled_random")):
        validate(dataclasses.replace(_config(), **kw))

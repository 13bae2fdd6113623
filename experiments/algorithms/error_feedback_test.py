"""Error feedback: what compression drops is sent later, the residual stays per client.

Checked against a numpy EF-SGD with top-k written out here (the server's decoded
means, round by round, to 1e-6), by the telescoping identity (everything a client
offered equals what the server decoded from it plus its residual), which a copy
without the feedback fails, and through the trainer: residuals survive a
checkpoint and the resumed round equals the uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import pytest

from experiments.aggregators import compression
from experiments.aggregators.compression_test import tff_worker  # noqa: F401
from experiments.aggregators.settings import parse_stages
from experiments.algorithms.error_feedback import ErrorFeedback

SHAPES = [(10, 4), (4,)]


def _updates(round_num: int, clients: int = 3) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(round_num)
    return [[rng.normal(size=s).astype(np.float32) for s in SHAPES] for _ in range(clients)]


def _top_k(x: np.ndarray, fraction: float) -> np.ndarray:
    flat = x.ravel()
    k = max(1, int(np.ceil(fraction * flat.size)))
    keep = np.argsort(-np.abs(flat), kind="stable")[:k]
    out = np.zeros_like(flat)
    out[keep] = flat[keep]
    return out.reshape(x.shape)


def test_top_k_feedback_matches_numpy_round_by_round(tff_worker) -> None:  # noqa: F811
    method = compression.Method("pipeline", stages=parse_stages("topk:0.1"))
    feedback = ErrorFeedback(method, SHAPES, experiment_seed=0)
    residual = {c: [np.zeros(s, np.float64) for s in SHAPES] for c in (4, 7, 9)}
    weights = [2.0, 1.0, 3.0]
    for round_num in range(3):
        updates = _updates(round_num)
        mean, measured = feedback.mean(updates, weights, [4, 7, 9], round_num)
        expected = [np.zeros(s) for s in SHAPES]
        for update, weight, client in zip(updates, weights, (4, 7, 9), strict=True):
            for i, u in enumerate(update):
                v = weight * u.astype(np.float64) + residual[client][i]
                sent = _top_k(v, 0.1)
                residual[client][i] = v - sent
                expected[i] += sent
        for got, want in zip(mean, expected, strict=True):
            np.testing.assert_allclose(got, want / sum(weights), atol=1e-6)
        assert measured[compression.CLIENTS_KEY] == 3
        # top 4 of 40 (6-bit indices) and 1 of 4 (2 bits), float32 values, per client
        assert measured[compression.BITS_KEY] == 3 * (32 * 5 + 6 * 4 + 2 * 1)


def _offered_and_decoded(feedback: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    method = compression.Method("pipeline", stages=parse_stages("topk:0.2,quantize:3"))
    ef = ErrorFeedback(method, SHAPES, experiment_seed=1)
    offered = [np.zeros(s) for s in SHAPES]
    decoded = [np.zeros(s) for s in SHAPES]
    for round_num in range(5):
        update = _updates(round_num, 1)[0]
        got, _ = ef.upload(3, update, round_num)
        if not feedback:  # the same compressor with the residual dropped each round
            ef.states.put(3, [np.zeros(s, np.float32) for s in SHAPES])
        offered = [o + u for o, u in zip(offered, update, strict=True)]
        decoded = [d + g for d, g in zip(decoded, got, strict=True)]
    residual = ef.states.get(3)
    return (np.concatenate([o.ravel() for o in offered]),
            np.concatenate([d.ravel() for d in decoded]),
            np.concatenate([r.ravel() for r in residual]))


def test_nothing_is_lost_only_delayed(tff_worker) -> None:  # noqa: F811
    offered, decoded, residual = _offered_and_decoded(feedback=True)
    np.testing.assert_allclose(decoded + residual, offered, atol=1e-5)
    assert np.linalg.norm(residual) > 0  # something is still in flight
    offered, decoded, residual = _offered_and_decoded(feedback=False)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(decoded + residual, offered, atol=1e-5)


def test_residuals_survive_a_checkpoint(tff_worker, emnist_dir: str) -> None:  # noqa: F811
    from experiments.algorithms.fedavg_numpy_test import _trainer

    flags = dict(algorithm="fedavg_unweighted", compression="pipeline",
                 compression_stages="topk:0.05", error_feedback=True)
    _, _, trainer, state = _trainer(emnist_dir, **flags)
    assert trainer.summary["client_state"] == "error-feedback residuals"
    for round_num in (1, 2):
        state, _ = trainer.run_round(state, round_num)
    saved = trainer.to_arrays(state)
    straight, row = trainer.run_round(state, 3)
    _, _, resumed_trainer, _ = _trainer(emnist_dir, **flags)
    resumed, resumed_row = resumed_trainer.run_round(resumed_trainer.from_arrays(saved), 3)
    for a, b in zip(trainer.model_weights(straight), resumed_trainer.model_weights(resumed),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert row["bits_up_per_client"] == resumed_row["bits_up_per_client"]

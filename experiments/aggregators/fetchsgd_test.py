"""FetchSGD's aggregator: exact bits, the server's step, error accumulation, refusals.

Checked against independent numpy: the bits against R C 32 per tensor written
out here; one round of the TFF aggregator against a numpy count sketch of the
clients' sum (the hashes exported as arrays), its median estimates, top-k and
new error sketch; over many rounds of fixed inputs the identity
sketch(sum of outputs) + E = rounds x sketch(sum of inputs) and the outputs'
rate converging to the inputs' (which the factory with its error sketch patched
out, and the same server step under per-round hashes, both fail); a short
FedAvg run's bits, compression factor, per-round sparsity and falling loss on
the generated EMNIST fixture; the refused combinations, by `validate` and by
the train binary (exit 2, one line).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from experiments.aggregators import compression as c
from experiments.aggregators import fetchsgd
from experiments.aggregators.compression_test import (  # noqa: F401
    SHAPES,
    _tensors,
    tff_worker,
)
from experiments.aggregators.sketch_test import numpy_sketch, numpy_unsketch
from experiments.config import ExperimentConfig, validate
from experiments.core.errors import UsageError
from experiments.core.paths import REPO_ROOT


def _method(rows: int = 5, columns: float = 0.25, topk: float = 0.05) -> c.Method:
    return c.Method("fetchsgd", sketch_rows=rows, sketch_columns_fraction=columns,
                    topk_fraction=topk)


def _hashes(method: c.Method, shape, index: int, seed: int):
    buckets, signs, width = fetchsgd.tensor_hashes(method, int(np.prod(shape)), index, seed)
    return buckets.numpy(), signs.numpy(), width


# ----- bits -------------------------------------------------------------------------
@pytest.mark.parametrize("rows,columns,formula", [
    # 120, 6, 90 values -> 30, round(1.5) = 2, round(22.5) = 22 columns; no seed.
    (5, 0.25, 5 * 32 * (30 + 2 + 22)),
    # 12, round(0.6) = 1, 9 columns.
    (3, 0.1, 3 * 32 * (12 + 1 + 9)),
    (1, 1.0, 1 * 32 * (120 + 6 + 90)),
])
def test_bits_are_r_c_float32_per_tensor(rows: int, columns: float, formula: int) -> None:
    method = _method(rows, columns)
    payload = fetchsgd.encode(method, _tensors(), experiment_seed=2)
    assert int(c.payload_bits(method, payload, SHAPES)) == formula
    assert c.expected_bits(method, SHAPES) == formula
    assert not method.sends_seed and method.broadcast_bits == 0


# ----- one round against numpy --------------------------------------------------------
def _process(method: c.Method, shapes: dict, seed: int):
    import tensorflow_federated as tff

    value_type = tff.types.to_type(collections.OrderedDict(
        (k, tff.TensorType(np.float32, s)) for k, s in shapes.items()))
    return fetchsgd.FetchSgdSumFactory(method, experiment_seed=seed).create(value_type)


def test_one_round_is_the_numpy_unsketch_of_the_summed_sketch(tff_worker) -> None:  # noqa: F811
    method, seed = _method(rows=5, columns=0.3, topk=0.1), 7
    shapes = collections.OrderedDict(a=(20, 6), b=(6,))
    clients = [collections.OrderedDict(a=t[0].numpy(), b=t[1].numpy())
               for t in (_tensors(s, list(shapes.values())) for s in range(3))]
    process = _process(method, shapes, seed)
    state = process.initialize()
    assert [np.shape(e) for e in state] == [(5, 36), (5, 2)]
    assert all(not np.any(e) for e in state)
    for _ in range(2):  # the second round starts from the first one's error sketch
        output = process.next(state, clients)
        for i, (key, shape) in enumerate(shapes.items()):
            buckets, signs, width = _hashes(method, shape, i, seed)
            total = np.sum([cl[key].astype(np.float64) for cl in clients], axis=0).ravel()
            table = numpy_sketch(total, buckets, signs, width) + np.asarray(state[i])
            n = int(np.prod(shape))
            expected = numpy_unsketch(table, buckets, signs, max(1, int(np.ceil(0.1 * n))))
            np.testing.assert_allclose(np.asarray(output.result[key]).ravel(), expected,
                                       atol=1e-4)
            assert np.count_nonzero(expected) == {120: 12, 6: 1}[n]
            np.testing.assert_allclose(np.asarray(output.state[i]),
                                       table - numpy_sketch(expected, buckets, signs, width),
                                       atol=1e-4)
        assert output.measurements[c.BITS_KEY] == 3 * c.expected_bits(
            method, list(shapes.values()))
        assert output.measurements[c.CLIENTS_KEY] == 3
        state = output.state
    assert np.abs(np.asarray(state[0])).max() > 0.1  # the error sketch is not idle


# ----- error accumulation ---------------------------------------------------------------
N, ROUNDS = 200, 200


def _fixed_clients():
    rng = np.random.default_rng(0)
    return [collections.OrderedDict(a=rng.normal(size=N).astype(np.float32))
            for _ in range(3)]


def _relative_error(total: np.ndarray, rounds: int, rate: np.ndarray) -> float:
    return float(np.linalg.norm(total / rounds - rate) / np.linalg.norm(rate))


def _tracks(errors: dict[int, float]) -> bool:
    """Outputs over many rounds converge to the input rate: within 12% after 200
    rounds and well below the error after 20 (k = 10 of 200 coordinates a round)."""
    return errors[ROUNDS] < 0.12 and errors[ROUNDS] < 0.4 * errors[20]


def _run_rounds(method: c.Method, seed: int = 4):
    clients = _fixed_clients()
    rate = np.sum([cl["a"].astype(np.float64) for cl in clients], axis=0)
    process = _process(method, {"a": (N,)}, seed)
    state, total, errors = process.initialize(), np.zeros(N), {}
    for r in range(1, ROUNDS + 1):
        output = process.next(state, clients)
        state = output.state
        total += np.asarray(output.result["a"], np.float64)
        errors[r] = _relative_error(total, r, rate)
    return rate, total, np.asarray(state[0], np.float64), errors


def test_the_outputs_track_the_inputs_through_the_error_sketch(tff_worker) -> None:  # noqa: F811
    method = _method(columns=0.5, topk=0.05)
    rate, total, error, errors = _run_rounds(method)
    buckets, signs, width = _hashes(method, (N,), 0, 4)
    # Telescoping: every round E_t = E_{t-1} + sketch(inputs) - sketch(output_t).
    np.testing.assert_allclose(numpy_sketch(total, buckets, signs, width) + error,
                               ROUNDS * numpy_sketch(rate, buckets, signs, width),
                               atol=1e-3 * ROUNDS)
    assert _tracks(errors), errors
    # One round's top-k alone carries a small part of the input (the check has power).
    assert errors[1] > 0.5


def test_without_the_error_sketch_the_outputs_do_not_track(tff_worker, monkeypatch) -> None:  # noqa: F811
    """The mutant: the server forgets what the top-k left out (E stays zero)."""
    monkeypatch.setattr(fetchsgd, "_carried", lambda table, sent: tf.zeros_like(table))
    _, _, error, errors = _run_rounds(_method(columns=0.5, topk=0.05))
    assert not np.any(error)
    assert not _tracks(errors), errors


def test_per_round_hashes_would_break_the_error_sketch() -> None:
    """Why the hashes are fixed for the run: the same server step with hashes drawn
    afresh each round adds last round's error table under the wrong buckets."""
    method = _method(columns=0.5, topk=0.05)
    rate = np.sum([cl["a"] for cl in _fixed_clients()], axis=0)
    errors = {}
    for per_round in (False, True):
        error, total, errors[per_round] = [tf.zeros([5, 100])], np.zeros(N), {}
        for r in range(1, ROUNDS + 1):
            seed = 1000 + r if per_round else 4
            summed = [fetchsgd.encode(method, [tf.constant(rate)], seed)["tensors"][0]["table"]]
            [out], error = fetchsgd.unsketch(method, summed, error, [(N,)], seed)
            total += out.numpy()
            errors[per_round][r] = _relative_error(total, r, rate)
    assert _tracks(errors[False]), errors[False]
    assert not _tracks(errors[True]), errors[True]


# ----- through the trainer --------------------------------------------------------------
def _mean_loss(task, w: np.ndarray, b: np.ndarray) -> float:
    """Mean cross-entropy of softmax regression over every training example (numpy)."""
    losses = []
    for client_id in task.train_data.client_ids:
        for x, y in task.train_data.create_tf_dataset_for_client(client_id).as_numpy_iterator():
            logits = np.reshape(x, -1).astype(np.float64) @ w + b
            logits -= logits.max()
            losses.append(np.log(np.exp(logits).sum()) - logits[int(y)])
    return float(np.mean(losses))


def test_a_short_training_run_reports_its_bits_and_learns(tff_worker, emnist_dir: str) -> None:  # noqa: F811
    from experiments.algorithms.fedavg_numpy_test import _trainer

    config, task, trainer, state = _trainer(emnist_dir, compression="fetchsgd",
                                            topk_fraction=0.05)
    validate(config)
    weights = [[a.astype(np.float64) for a in trainer.model_weights(state)]]
    rows = []
    for r in range(1, 7):
        state, row = trainer.run_round(state, r)
        rows.append(row)
        weights.append([a.astype(np.float64) for a in trainer.model_weights(state)])
    params = 784 * 62 + 62
    # 5 rows x (4,861 + 6) columns of float32, no seed; FedAvg's float32 weight.
    payload = 32 * 5 * (4_861 + 6) + 32
    for row in rows:
        assert row["bits_up_per_client"] == payload
        assert row["bits_down_per_client"] == 32 * params  # nothing beyond the model
        assert row["compression_factor"] == pytest.approx((32 * params + 32) / payload)
    # Server SGD at rate 1: each round's model change is the unsketched mean, with
    # at most k = ceil(0.05 n) non-zeros per tensor (2,431 of the kernel, 4 of the bias).
    for before, after in zip(weights, weights[1:], strict=False):
        assert 0 < np.count_nonzero(after[0] - before[0]) <= 2_431
        assert 0 < np.count_nonzero(after[1] - before[1]) <= 4
    losses = [_mean_loss(task, *w) for w in weights]
    assert losses[-1] < losses[0] - 0.05, losses


# ----- refusals -------------------------------------------------------------------------
REFUSED = [
    (dict(algorithm="fedavg_unweighted", dp="fixed", noise_multiplier=1.0),
     "--compression=fetchsgd needs --dp=none (got fixed)"),
    (dict(algorithm="fedavg_unweighted", dp="local", noise_multiplier=1.0),
     "--compression=fetchsgd needs --dp=none (got local)"),
    (dict(error_feedback=True),
     "--error_feedback cannot be combined with --compression=fetchsgd"),
    (dict(algorithm="fedavg_unweighted", aggregator="median"),
     "--aggregator=median cannot be combined with --compression=fetchsgd"),
    (dict(aggregator="norm_clip"),
     "--aggregator=norm_clip cannot be combined with --compression=fetchsgd"),
    (dict(algorithm="fedavg_unweighted", aggregator="secure_sum"),
     "--aggregator=secure_sum cannot be combined with --compression=fetchsgd"),
    (dict(aggregator="tff_secure"),
     "--aggregator=tff_secure cannot be combined with --compression=fetchsgd"),
    (dict(sketch_rows=0), "--sketch_rows=0 must be a positive integer"),
    (dict(sketch_columns_fraction=0.0), "--sketch_columns_fraction=0.0 must be in (0, 1]"),
    (dict(topk_fraction=1.5), "--topk_fraction=1.5 must be in (0, 1]"),
]


@pytest.mark.parametrize("overrides,message", REFUSED)
def test_refused_combinations_are_one_line_usage_errors(overrides: dict, message: str
                                                        ) -> None:
    validate(ExperimentConfig(compression="fetchsgd"))  # the base is valid
    with pytest.raises(UsageError) as error:
        validate(ExperimentConfig(compression="fetchsgd", **overrides))
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("flag,value", [("sketch_rows", 3),
                                        ("sketch_columns_fraction", 0.2),
                                        ("topk_fraction", 0.1)])
def test_the_sketch_flags_only_apply_to_fetchsgd(flag: str, value) -> None:
    for method in ("none", "pipeline"):
        with pytest.raises(UsageError, match=f"--{flag} only applies to "
                                             f"--compression=fetchsgd$"):
            validate(ExperimentConfig(compression=method, compression_stages=(
                "topk:0.1" if method == "pipeline" else ""), **{flag: value}))


# One refusal through the binary (the others are the same validate() call, tested above).
@pytest.mark.parametrize("overrides,message", REFUSED[:1])
def test_the_train_binary_exits_2_with_the_one_line(tmp_path, overrides: dict,
                                                    message: str) -> None:
    args = [f"--{k}={v}" for k, v in overrides.items()]
    command = [sys.executable, "-m", "experiments.train", "--compression=fetchsgd",
               *args, f"--root_output_dir={tmp_path}", "--noprogress"]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"train: error: {message}"), lines
    assert done.stdout == "" and not os.listdir(tmp_path)

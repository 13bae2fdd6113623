"""Compressed updates: unbiasedness, exact bit counts, inverses, rank, aggregation.

Numbers are checked against independent numpy computations: the mean of many
encoded-decoded copies against the original (with a tolerance from the
method's variance, and a biased control that the same check rejects), the
bits against the closed-form size of each payload, the Hadamard transform
against numpy's Sylvester matrix, ranks with numpy's matrix_rank, and the
TFF aggregate against the numpy sum of each client's decoded update. At the
trainer level (`--model=logistic` on the generated EMNIST fixture) the
metrics row's bits and compression factor must equal the formula, and a
compressed FedAvg round must land within the quantisation bound of the
independent numpy FedAvg round of `fedavg_numpy_test`.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import numpy as np
import pytest
import tensorflow as tf

from experiments.aggregators import compression as c
from experiments.aggregators import transforms as t
from experiments.config import ExperimentConfig, validate
from experiments.core.errors import UsageError

SHAPES = [(20, 6), (6,), (3, 3, 2, 5)]


def _tensors(seed: int = 0, shapes=SHAPES) -> list[tf.Tensor]:
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=s).astype(np.float32)) for s in shapes]


def _roundtrip(method: c.Method, tensors, round_seed: int) -> list[np.ndarray]:
    shapes = [tuple(t.shape) for t in tensors]
    payload = c.encode(method, tensors, tf.constant(round_seed), experiment_seed=1)
    return [d.numpy() for d in c.decode(method, payload, shapes, tf.constant(round_seed))]


def _compiled_roundtrip(method: c.Method, tensors):
    """encode + decode as one tf.function of the round seed (fast for many copies)."""
    shapes = [tuple(t.shape) for t in tensors]

    @tf.function
    def run(round_seed):
        payload = c.encode(method, tensors, round_seed, experiment_seed=1)
        return c.decode(method, payload, shapes, round_seed)

    return lambda r: [d.numpy() for d in run(tf.constant(r))]


@pytest.fixture(scope="module")
def tff_worker() -> Iterator[None]:
    from experiments.core import tff_worker

    with tff_worker.session():
        yield


# ----- unbiasedness -----------------------------------------------------------------
@pytest.mark.parametrize("method", [
    c.Method("quantize", bits=2), c.Method("quantize", bits=1),
    c.Method("rotate_quantize", bits=2), c.Method("random_mask", keep_fraction=0.25),
    c.Method("low_rank_unbiased", rank=4)])
def test_mean_of_many_copies_converges_to_the_original(method: c.Method) -> None:
    tensors = _tensors(shapes=[(8, 16)])
    x = tensors[0].numpy()
    copies = 2000
    total = np.zeros_like(x, dtype=np.float64)
    sq = np.zeros_like(total)
    roundtrip = _compiled_roundtrip(method, tensors)
    for r in range(copies):  # a new round seed each time: independent noise
        d = roundtrip(r)[0].astype(np.float64)
        total += d
        sq += d * d
    mean = total / copies
    std_of_mean = np.sqrt(np.maximum(sq / copies - mean**2, 0) / copies)
    # Each coordinate within 5 standard errors (plus float slack), and the whole
    # vector's error no more than its sampling noise.
    assert np.all(np.abs(mean - x) <= 5 * std_of_mean + 1e-5)
    assert np.linalg.norm(mean - x) <= 2 * np.linalg.norm(std_of_mean) + 1e-5
    # The check has power: copies really are noisy, and an estimate shrunk by a
    # quarter (e.g. a mask rescaled by 1/(2p) instead of 1/p would be worse) fails it.
    assert np.linalg.norm(std_of_mean) * np.sqrt(copies) > 0.05 * np.linalg.norm(x)
    biased = mean * 0.75
    assert not np.all(np.abs(biased - x) <= 5 * std_of_mean + 1e-5)


def test_low_rank_is_the_update_shrunk_by_k_over_m_in_expectation() -> None:
    """The plain projection is biased: over many bases its mean is (k / m) x, m = 16."""
    tensors = _tensors(shapes=[(8, 16)])
    x = tensors[0].numpy().astype(np.float64)
    roundtrip = _compiled_roundtrip(c.Method("low_rank", rank=4), tensors)
    mean = np.mean([roundtrip(r)[0].astype(np.float64) for r in range(2000)], axis=0)
    assert np.linalg.norm(mean - x * 4 / 16) < 0.1 * np.linalg.norm(x * 4 / 16)
    assert np.linalg.norm(mean - x) > 0.5 * np.linalg.norm(x)


def test_deterministic_rounding_would_be_biased() -> None:
    """Control: rounding to the nearest level (no noise) fails the unbiasedness check."""
    x = _tensors(shapes=[(64,)])[0]
    nearest = t.dequantize({**t.quantize(x, 1, tf.constant([0, 0])),
                            "codes": tf.cast(tf.round((x - tf.reduce_min(x)) / (
                                tf.reduce_max(x) - tf.reduce_min(x))), tf.int32)}, 1)
    assert np.abs(nearest.numpy() - x.numpy()).mean() > 0.1


# ----- bits -------------------------------------------------------------------------
@pytest.mark.parametrize("method,formula", [
    # n x b + lo and hi per tensor; no seed travels.
    (c.Method("quantize", bits=3), 3 * (120 + 6 + 90) + 64 * 3),
    (c.Method("quantize", bits=16), 16 * (120 + 6 + 90) + 64 * 3),
    # Padded to whole Hadamard blocks (120 -> 120 in blocks of 8, 6 -> 6 in blocks of
    # 2, 90 -> 92 in blocks of 4), lo and hi per tensor, one 32-bit seed.
    (c.Method("rotate_quantize", bits=2), 2 * (120 + 6 + 92) + 64 * 3 + 32),
    # Kernels [20, 6] -> factor 2 x 6; [18, 5] -> 2 x 5; the bias dense; seed.
    (c.Method("low_rank", rank=2), 32 * (2 * 6 + 6 + 2 * 5) + 32),
    (c.Method("low_rank_unbiased", rank=2), 32 * (2 * 6 + 6 + 2 * 5) + 32),
    # rank 5 >= min(18, 5): that kernel travels dense.
    (c.Method("low_rank", rank=5), 32 * (5 * 6 + 6 + 90) + 32),
])
def test_reported_bits_equal_the_payload_formula(method: c.Method, formula: int) -> None:
    payload = c.encode(method, _tensors(), tf.constant(7))
    assert int(c.payload_bits(method, payload, SHAPES)) == formula
    assert c.expected_bits(method, SHAPES) == formula


def test_random_mask_bits_count_the_values_actually_sent() -> None:
    method = c.Method("random_mask", keep_fraction=0.3)
    tensors = _tensors()
    payload = c.encode(method, tensors, tf.constant(3))
    decoded = c.decode(method, payload, SHAPES, tf.constant(3))
    sent = sum(int(np.count_nonzero(d.numpy())) for d in decoded)  # the data has no zeros
    assert int(c.payload_bits(method, payload, SHAPES)) == 32 * sent + 32
    assert abs(sent - 0.3 * 216) < 4 * np.sqrt(216 * 0.3 * 0.7)
    # Kept values arrive scaled by 1/p, the others are zero.
    for d, x in zip(decoded, tensors, strict=True):
        kept = d.numpy() != 0
        np.testing.assert_allclose(d.numpy()[kept], x.numpy()[kept] / 0.3, rtol=1e-6)


def test_padding_is_paid_for() -> None:
    assert t.padded_size(1000) == 1024 and t.block_size(1000) == 1024  # 24 <= 1000 / 32
    assert t.padded_size(90) == 92 and t.block_size(90) == 4
    assert t.padded_size(2**20) == 2**20 and t.block_size(2**20) == t.MAX_BLOCK
    assert t.padded_size(1_179_648) == 1_179_648  # 9216 x 128: 72 blocks of 2^14
    assert t.block_size(99_991) == 4096  # a large prime: 2,409 padded elements
    assert t.block_size(7) == 1  # tiny primes are only sign-flipped
    for n in (1, 3, 62, 1000, 7850, 18_432, 99_991):
        assert n <= t.padded_size(n) <= n + max(1, n // 32)


# ----- rotation ---------------------------------------------------------------------
def test_hadamard_matches_sylvester_matrix() -> None:
    h = np.ones((1, 1))
    while h.shape[0] < 64:
        h = np.block([[h, h], [h, -h]])
    x = np.random.default_rng(1).normal(size=(3, 64)).astype(np.float32)
    np.testing.assert_allclose(t.hadamard(tf.constant(x)).numpy(), x @ h.T / 8, atol=1e-5)


@pytest.mark.parametrize("n", [1, 6, 1000, 5000, 2**15 + 3])
def test_rotation_and_inverse_round_trip(n: int) -> None:
    x = tf.constant(np.random.default_rng(n).normal(size=n).astype(np.float32))
    seed = tf.constant([4, 2])
    rotated = t.rotate(x, seed)
    assert rotated.shape[0] == t.padded_size(n)
    np.testing.assert_allclose(np.linalg.norm(rotated.numpy()), np.linalg.norm(x.numpy()),
                               rtol=1e-5)  # orthonormal
    np.testing.assert_allclose(t.unrotate(rotated, n, seed).numpy(), x.numpy(), atol=1e-5)
    if n > 8:  # a different seed is a different rotation
        assert np.abs(t.unrotate(rotated, n, tf.constant([4, 3])).numpy()
                      - x.numpy()).max() > 0.1


def test_rotation_shrinks_the_range_quantisation_sees() -> None:
    x = np.zeros(4096, np.float32)
    x[7] = 1.0  # one spike: plain quantisation wastes its levels
    rotated = t.rotate(tf.constant(x), tf.constant([1, 1])).numpy()
    assert np.ptp(rotated) < 0.1 * np.ptp(x)


# ----- low rank ---------------------------------------------------------------------
@pytest.mark.parametrize("rank", [1, 2, 4])
def test_low_rank_updates_have_rank_at_most_k(rank: int) -> None:
    shapes = [(40, 12), (12, 40), (3, 3, 4, 8), (12,)]
    tensors = _tensors(shapes=shapes)
    decoded = _roundtrip(c.Method("low_rank", rank=rank), tensors, 5)
    for d, s, x in zip(decoded, shapes, tensors, strict=True):
        if len(s) >= 2:
            assert np.linalg.matrix_rank(d.reshape(-1, s[-1]), tol=1e-4) == rank
            assert np.linalg.norm(d) <= np.linalg.norm(x.numpy()) + 1e-5  # a projection
        else:
            np.testing.assert_array_equal(d, x.numpy())  # biases travel as they are


@pytest.mark.parametrize("shape", [(40, 12), (12, 40)])
def test_low_rank_is_the_projection_onto_the_seeded_basis(shape) -> None:
    method, seed = c.Method("low_rank", rank=3), tf.constant([5, 6])
    u = _tensors(shapes=[shape])[0]
    payload = c.encode_tensor(method, u, seed, index=0)
    long_side = max(shape)
    assert payload["factor"].shape == ((3, shape[1]) if shape[0] == long_side else (shape[0], 3))
    a = t.basis(long_side, 3, c._seed(seed, 0, 0)).numpy().astype(np.float64)
    np.testing.assert_allclose(a.T @ a, np.eye(3), atol=1e-5)
    un = u.numpy().astype(np.float64)
    expected = a @ a.T @ un if shape[0] == long_side else un @ a @ a.T
    decoded = c.decode_tensor(method, payload, shape, seed, index=0).numpy()
    np.testing.assert_allclose(decoded, expected, atol=1e-5)


# ----- aggregation ------------------------------------------------------------------
@pytest.mark.parametrize("method", [
    c.Method("quantize", bits=3), c.Method("rotate_quantize", bits=2),
    c.Method("random_mask", keep_fraction=0.3), c.Method("low_rank", rank=2)])
def test_decoded_aggregate_equals_sum_of_decoded_client_updates(tff_worker,
                                                                method: c.Method) -> None:
    import tensorflow_federated as tff

    value_type = tff.types.to_type(collections.OrderedDict(
        a=tff.TensorType(np.float32, [20, 6]), b=tff.TensorType(np.float32, [6])))
    clients = [collections.OrderedDict(a=t[0].numpy(), b=t[1].numpy())
               for t in (_tensors(s) for s in range(4))]
    process = c.CompressedSumFactory(method, experiment_seed=9).create(value_type)
    state = process.initialize()
    for round_seed in range(2):  # the round counter advances and is used
        output = process.next(state, clients)
        state = output.state
        assert int(state) == round_seed + 1
        decoded, bits = [], 0
        for client in clients:
            tensors = [tf.constant(client["a"]), tf.constant(client["b"])]
            payload = c.encode(method, tensors, tf.constant(round_seed), experiment_seed=9)
            bits += int(c.payload_bits(method, payload, [(20, 6), (6,)]))
            decoded.append(c.decode(method, payload, [(20, 6), (6,)], tf.constant(round_seed)))
        for i, key in enumerate(("a", "b")):
            expected = np.sum([d[i].numpy().astype(np.float64) for d in decoded], axis=0)
            np.testing.assert_allclose(output.result[key], expected, atol=1e-5)
            exact = np.sum([cl[key] for cl in clients], axis=0)
            if key == "a":  # the compression is not a no-op
                assert np.abs(expected - exact).max() > 1e-3
        assert output.measurements[c.BITS_KEY] == bits
        assert output.measurements[c.CLIENTS_KEY] == len(clients)


# ----- flags ------------------------------------------------------------------------
@pytest.mark.parametrize("overrides,message", [
    (dict(compression="quantize", quantization_bits=0), "--quantization_bits=0 must be"),
    (dict(compression="quantize", quantization_bits=17), "--quantization_bits=17 must be"),
    (dict(compression="random_mask", keep_fraction=0.0), "--keep_fraction=0.0 must be"),
    (dict(compression="low_rank", rank=0), "--rank=0 must be"),
    (dict(compression="quantize", rank=3), "--rank only applies to --compression=low_rank"),
    (dict(keep_fraction=0.5), "--keep_fraction only applies"),
    (dict(compression="quantize", algorithm="fedavg_unweighted", dp="fixed",
          noise_multiplier=1.0), "cannot follow --dp=fixed"),
    (dict(compression="tff", algorithm="fedavg_unweighted", aggregator="secure_sum"),
     "secure_sum"),
    (dict(compression="low_rank", algorithm="centralized"), "not --algorithm=centralized"),
])
def test_bad_combinations_are_refused_in_one_line(overrides: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message) as error:
        validate(ExperimentConfig(**overrides))
    assert "\n" not in str(error.value)


def test_local_dp_then_compression_is_allowed() -> None:
    validate(ExperimentConfig(compression="rotate_quantize", algorithm="fedavg_unweighted",
                              dp="local", noise_multiplier=0.5, quantization_bits=2))


# ----- through the trainer (TFF FedAvg on the generated EMNIST fixture) -------------
def _numpy_client_updates(task, config, round_num: int, w: np.ndarray, b: np.ndarray):
    """Each sampled client's (kernel, bias) update and example count, in float64."""
    from experiments.algorithms.fedavg_numpy_test import _client_batches, _forward
    from experiments.simulation import sampling

    updates = []
    for index in sampling.sample_clients(len(task.train_data.client_ids),
                                         config.clients_per_round, config.seed, round_num):
        wc, bc, examples = w.copy(), b.copy(), 0
        for x, y in _client_batches(task, config, round_num, int(index)):
            _, dlogits, _ = _forward(wc, bc, x, y)
            wc -= config.client_learning_rate * (x.T @ dlogits)
            bc -= config.client_learning_rate * dlogits.sum(axis=0)
            examples += len(y)
        updates.append((wc - w, bc - b, examples))
    return updates


@pytest.mark.parametrize("compression,bits,rank", [("quantize", 4, 4), ("low_rank", 8, 2)])
def test_trainer_round_bits_and_decoded_mean(tff_worker, emnist_dir: str, compression: str,
                                             bits: int, rank: int) -> None:
    from experiments.algorithms.fedavg_numpy_test import _trainer

    config, task, trainer, state = _trainer(
        emnist_dir, compression=compression, quantization_bits=bits, rank=rank)
    validate(config)
    w0, b0 = (a.astype(np.float64) for a in trainer.model_weights(state))
    state, row = trainer.run_round(state, 1)
    w1, b1 = trainer.model_weights(state)

    params = 784 * 62 + 62
    float32_up = 32 * params + 32  # plus the float32 example weight (weighted FedAvg)
    if compression == "quantize":  # b bits per weight, lo and hi per tensor, the weight
        payload = bits * params + 2 * 64 + 32
    else:  # kernel 784 x 62 -> factor rank x 62; the bias dense; seed; the weight
        payload = 32 * (rank * 62 + 62) + 32 + 32
    assert row["bits_up_per_client"] == payload
    assert row["bits_down_per_client"] == 32 * params + 32  # the model and r
    assert row["compression_factor"] == pytest.approx(float32_up / payload)
    assert row["bytes_up_per_client"] == payload / 8

    updates = _numpy_client_updates(task, config, 1, w0, b0)
    total = sum(n for _, _, n in updates)
    mean_w = sum(n * u for u, _, n in updates) / total
    mean_b = sum(n * v for _, v, n in updates) / total
    delta_w, delta_b = w1 - w0, b1 - b0
    if compression == "quantize":
        # Each client's weighted update is off by less than one level per coordinate.
        bound_w = sum(np.ptp(n * u) / (2**bits - 1) for u, _, n in updates) / total
        bound_b = sum(np.ptp(n * v) / (2**bits - 1) for _, v, n in updates) / total
        assert np.abs(delta_w - mean_w).max() <= bound_w + 1e-5
        assert np.abs(delta_b - mean_b).max() <= bound_b + 1e-5
        assert np.abs(delta_w - mean_w).max() > 1e-3 * bound_w  # it did quantise
    else:
        # Biases travel uncompressed: exact FedAvg. Kernels: a sum of 3 rank-k updates.
        np.testing.assert_allclose(delta_b, mean_b, atol=1e-5)
        assert np.linalg.matrix_rank(delta_w, tol=1e-6) <= 3 * rank
        assert np.linalg.matrix_rank(mean_w, tol=1e-6) > 3 * rank

"""Composed compression: exact bits, unbiasedness over many seeds, the aggregate's decode.

The bit counts are checked against formulas written out here; unbiasedness of
every unbiased composition by the mean of many decodes (with a bound from the
decodes' own spread, and a biased stage that the same check rejects); the
TFF aggregator's sum against the sum of the per-client decodes; the flag
parsing's one-line errors.
"""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest
import tensorflow as tf

from experiments.aggregators import compression as c
from experiments.aggregators import pipeline
from experiments.aggregators.compression_test import (  # noqa: F401
    SHAPES,
    _tensors,
    tff_worker,
)
from experiments.aggregators.settings import parse_stages
from experiments.config import ExperimentConfig, validate
from experiments.core.errors import UsageError


def _method(spec: str) -> c.Method:
    return c.Method("pipeline", stages=parse_stages(spec))


@pytest.mark.parametrize("spec,formula", [
    # 120 -> 12 kept -> 12 padded (blocks of 4) -> 2 bits; 6 -> 1 -> 1; 90 -> 9 -> 9.
    ("subsample:0.1,rotate,quantize:2", 2 * (12 + 1 + 9) + 64 * 3 + 32),
    # top 12 of 120 (7-bit indices), 1 of 6 (3 bits), 9 of 90 (7 bits), float32 values.
    ("topk:0.1", 32 * (12 + 1 + 9) + 7 * 12 + 3 * 1 + 7 * 9),
    # top-k then 4-bit codes: indices as above, no seed (top-k needs none).
    ("topk:0.1,quantize:4", 4 * (12 + 1 + 9) + 64 * 3 + 7 * 12 + 3 + 7 * 9),
    # rotation alone: padded lengths 120, 6, 92 as float32, one seed.
    ("rotate", 32 * (120 + 6 + 92) + 32),
    # count sketch into 30, 2 (round(0.25 * 6)), 22 buckets, float32; one seed.
    ("sketch:0.25", 32 * (30 + 2 + 22) + 32),
    # scaled signs: one bit per value and the mean magnitude per tensor, no seed.
    ("sign", (120 + 6 + 90) + 32 * 3),
    # 30, 2, 22 buckets rotate in blocks of 2 (no padding), then one bit each.
    ("sketch:0.25,rotate,sign", (30 + 2 + 22) + 32 * 3 + 32),
])
def test_bits_are_the_payloads_and_the_formulas(spec: str, formula: int) -> None:
    method = _method(spec)
    payload = c.encode(method, _tensors(), tf.constant(5))
    assert int(c.payload_bits(method, payload, SHAPES)) == formula
    assert c.expected_bits(method, SHAPES) == formula


def _mean_decode(spec: str, draws: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The truth, and the mean and standard error of its decodes over `draws` seeds."""
    method = _method(spec)
    x = _tensors(3, [(64,)])
    decodes = []
    for seed in range(draws):
        payload = c.encode(method, x, tf.constant(seed))
        decodes.append(c.decode(method, payload, [(64,)], tf.constant(seed))[0].numpy())
    decodes = np.asarray(decodes, np.float64)
    return (x[0].numpy().astype(np.float64), decodes.mean(axis=0),
            decodes.std(axis=0, ddof=1) / math.sqrt(draws))


def _looks_unbiased(truth, mean, error) -> bool:
    """E ||mean - truth||^2 = sum of the squared standard errors when unbiased (a bias
    b adds ||b||^2); 3x that sum leaves a false-alarm rate well below 1e-3 for 64
    coordinates, and a per-coordinate test would trip on coordinates whose rounding
    up is rare (zero observed spread)."""
    return float(np.sum((mean - truth) ** 2)) <= 3 * float(np.sum(error ** 2)) + 1e-10


@pytest.mark.parametrize("spec", ["subsample:0.25", "rotate,quantize:2",
                                  "subsample:0.25,rotate,quantize:2",
                                  "subsample:0.5,quantize:1", "quantize:3", "sketch:0.5",
                                  "sketch:0.5,rotate,quantize:2"])
def test_unbiased_compositions_are_unbiased(spec: str) -> None:
    assert pipeline.unbiased(parse_stages(spec))
    assert _looks_unbiased(*_mean_decode(spec))


@pytest.mark.parametrize("spec", ["topk:0.25,quantize:2", "rotate,sign"])
def test_the_check_rejects_a_biased_composition(spec: str) -> None:
    assert not pipeline.unbiased(parse_stages(spec))
    assert not _looks_unbiased(*_mean_decode(spec, draws=100))


def test_lossless_stages_decode_exactly() -> None:
    method = _method("topk:1.0,rotate")  # keeps everything, rotates and back
    x = _tensors(1)
    decoded = c.decode(method, c.encode(method, x, tf.constant(2)), SHAPES, tf.constant(2))
    for got, want in zip(decoded, x, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


def test_the_aggregate_is_the_sum_of_the_decoded_updates(tff_worker) -> None:  # noqa: F811
    import tensorflow_federated as tff

    method = _method("subsample:0.3,rotate,quantize:2")
    value_type = tff.types.to_type(collections.OrderedDict(
        a=tff.TensorType(np.float32, [20, 6]), b=tff.TensorType(np.float32, [6])))
    clients = [collections.OrderedDict(a=t[0].numpy(), b=t[1].numpy())
               for t in (_tensors(s, [(20, 6), (6,)]) for s in range(3))]
    process = c.CompressedSumFactory(method, experiment_seed=4).create(value_type)
    output = process.next(process.initialize(), clients)
    decoded, bits = [], 0
    for client in clients:
        tensors = [tf.constant(client["a"]), tf.constant(client["b"])]
        payload = c.encode(method, tensors, tf.constant(0), experiment_seed=4)
        bits += int(c.payload_bits(method, payload, [(20, 6), (6,)]))
        decoded.append(c.decode(method, payload, [(20, 6), (6,)], tf.constant(0)))
    for i, key in enumerate(("a", "b")):
        expected = np.sum([d[i].numpy() for d in decoded], axis=0)
        np.testing.assert_allclose(np.asarray(output.result[key]), expected, atol=1e-5)
    assert int(output.measurements[c.BITS_KEY]) == bits


@pytest.mark.parametrize("spec,message", [
    ("quantize:2,rotate", "quantize or sign must be the last stage"),
    ("sign,quantize:2", "quantize or sign must be the last stage"),
    ("sign:1", "rotate and sign take no value"),
    ("subsample:0", "the fraction must be in (0, 1]"),
    ("rotate:3", "rotate and sign take no value"),
    ("quantize:2.5", "bits must be an integer in 1..16"),
    ("countsketch:0.1", "unknown stage 'countsketch'"),
    ("rotate,rotate", "each stage may appear once"),
    ("", "no stages"),
])
def test_bad_stage_specs_are_one_line_errors(spec: str, message: str) -> None:
    config = ExperimentConfig(compression="pipeline", compression_stages=spec)
    with pytest.raises(UsageError) as error:
        validate(config)
    assert str(error.value).startswith("--compression_stages=")
    assert message in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(UsageError, match="--compression_stages only applies"):
        validate(ExperimentConfig(compression_stages="rotate"))


def test_a_training_round_reports_the_pipelines_bits(tff_worker, emnist_dir: str) -> None:  # noqa: F811
    from experiments.algorithms.fedavg_numpy_test import _trainer

    spec = "subsample:0.1,rotate,quantize:2"
    config, _, trainer, state = _trainer(emnist_dir, compression="pipeline",
                                         compression_stages=spec)
    validate(config)
    before = [w.copy() for w in trainer.model_weights(state)]
    state, row = trainer.run_round(state, 1)
    # kernel 48,608 -> 4,861 kept -> padded to blocks -> 2 bits; bias 62 -> 6 -> 2 bits;
    # min and max per tensor, the 32-bit seed, and weighted FedAvg's float32 weight.
    stages = parse_stages(spec)
    kernel, bias = pipeline.lengths(stages, 784 * 62), pipeline.lengths(stages, 62)
    assert kernel[:2] == [48_608, 4_861] and bias[:2] == [62, 6]
    assert row["bits_up_per_client"] == 2 * (kernel[-1] + bias[-1]) + 4 * 32 + 32 + 32
    assert row["compression_factor"] == pytest.approx((32 * (48_608 + 62) + 32)
                                                      / row["bits_up_per_client"])
    after = trainer.model_weights(state)
    assert all(np.any(a != b) for a, b in zip(after, before, strict=True))  # it trained

"""Compressed client updates: encoders, decoders and their TFF aggregator.

Why: the upload is the bottleneck of cross-device FL, and a compression
claim is only as good as its bit count. Each method here encodes a client's
update into a payload of tensors whose wire width is fixed per field, and the
bits a client uploads are counted from those payload tensors (elements x
width, including scales and seeds), never from the flag.

Methods (`--compression`):

* `quantize`: unbiased stochastic uniform quantisation of each tensor to
  `--quantization_bits` b (1..16) between its own min and max:
  code = floor((x - lo) / s + u), u ~ U[0, 1), s = (hi - lo) / (2^b - 1);
  decoded lo + code * s. Payload: b bits per element, lo and hi (float32).
* `rotate_quantize`: Suresh et al. 2017. Each tensor is flattened, zero-padded
  to whole blocks of a power-of-two size (the largest block up to 2^14 that
  pads by at most 1/32; the padding is paid for in bits), multiplied by seeded
  random signs D and by the orthonormal Walsh-Hadamard matrix H/sqrt(B) per
  block, then quantised as above. The server inverts with D H/sqrt(B)
  (H is symmetric and orthogonal). Payload: b bits per padded element, lo and
  hi, and the client's 32-bit seed.
* `random_mask`: sketched subsampling. Each coordinate is kept independently
  with probability p = `--keep_fraction` (a Bernoulli mask drawn from the
  client's seed; a fixed-size uniform subset needs a sort of n random keys,
  10x the cost); only the kept float32 values and the 32-bit seed travel, so
  the payload size varies around p n and is counted per client. The server
  rebuilds the mask from the seed and scales by 1 / p: unbiased.
* `low_rank`: structured updates (Konecny et al. 2016). Every kernel of rank
  >= 2, viewed as an m x n matrix (conv kernels as [kh*kw*in, out]), is
  restricted to rank k = `--rank` through a fixed random matrix A with
  orthonormal columns (QR of a seeded Gaussian) on its longer side: the
  client sends only the least-squares factor B = A^T U (or U A), the server
  decodes A B (or B A^T). This is the projection of the full update onto the
  span of A (not a scaled, unbiased estimate: the restriction is the method;
  in expectation over A it is the update shrunk by k / m, m the longer side).
  Tensors with min(m, n) <= k and biases travel as float32.
* `pipeline`: `--compression_stages` composed in order on each tensor
  (subsample, top-k, rotation, quantisation; experiments.aggregators.pipeline).
* `low_rank_unbiased`: the same payload, decoded as (m / k) A B: A A^T is a
  uniformly random rank-k projection with expectation (k / m) I, so the
  rescaled decode is an unbiased estimate of U (with k / m of its variance
  budget: much noisier per client than the projection).
* `fetchsgd`: FetchSGD (Rothchild et al. 2020). Each tensor goes as an R x C
  count sketch under hashes every client shares, the server sums the sketches,
  adds its error sketch and keeps the top-k of the unsketched estimates; its
  own factory, `experiments.aggregators.fetchsgd.FetchSgdSumFactory` (the
  sketches are summed before any decoding). Payload: R C float32 per tensor,
  no seed; nothing is broadcast (the hashes follow from the experiment seed).

Seeds: the aggregator state is a round counter r the server broadcasts
(32 bits down). A client's seed is [r, h], h a 32-bit fingerprint of its own
update and the experiment seed, so seeds differ per client and per round and
runs stay reproducible. h travels in the payload (32 bits) for the methods
whose decoder needs it; the quantiser's rounding noise uses it too but the
server does not need it, so `quantize` sends no seed.

Simulation: clients encode in `tff.federated_map`; the per-client decode the
server would run is mapped over the payloads (it reads only the payload and
the server's own r), then summed. `CompressedSumFactory` is a sum factory:
wrap it in `tff.aggregators.MeanFactory` / `UnweightedMeanFactory` (see
`experiments.aggregators.chain`), which weight each update before it is encoded.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from experiments.aggregators import pipeline, sketch
from experiments.aggregators.settings import CompressionSettings, Stage, parse_stages
from experiments.aggregators.transforms import (
    basis,
    dequantize,
    is_restricted,
    mask,
    matrix_shape,
    padded_size,
    quantize,
    rotate,
    unrotate,
)

METHODS = ("none", "quantize", "rotate_quantize", "random_mask", "low_rank",
           "low_rank_unbiased", "pipeline", "fetchsgd", "tff")
_LOW_RANK = ("low_rank", "low_rank_unbiased")
SEED_BITS = 32  # the client's part h of its seed [r, h]
ROUND_SEED_BITS = 32  # the round counter r broadcast to clients
FLOAT_BITS = 32
BITS_KEY = "compression_bits_up"  # measurement: sum over clients of payload bits
CLIENTS_KEY = "compression_clients"  # measurement: number of payloads summed
_SEEDED = ("rotate_quantize", "random_mask", "low_rank", "low_rank_unbiased")


@dataclasses.dataclass(frozen=True)
class Method:
    """One compression setting."""

    name: str
    bits: int = 8
    keep_fraction: float = 0.1
    rank: int = 4
    stages: tuple[Stage, ...] = ()  # pipeline
    sketch_rows: int = 5  # fetchsgd: R
    sketch_columns_fraction: float = 0.1  # fetchsgd: C = max(1, round(fraction n))
    topk_fraction: float = 0.01  # fetchsgd: k = max(1, ceil(fraction n))

    @classmethod
    def of(cls, settings: CompressionSettings) -> Method:
        """The method of a run's compression flags."""
        stages = (parse_stages(settings.compression_stages)
                  if settings.compression == "pipeline" else ())
        return cls(settings.compression, bits=settings.quantization_bits,
                   keep_fraction=settings.keep_fraction, rank=settings.rank, stages=stages,
                   sketch_rows=settings.sketch_rows,
                   sketch_columns_fraction=settings.sketch_columns_fraction,
                   topk_fraction=settings.topk_fraction)

    @property
    def broadcast_bits(self) -> int:
        """Bits the aggregator broadcasts to each client per round: the round counter,
        or nothing for `fetchsgd` (its hashes follow from the experiment seed)."""
        return 0 if self.name == "fetchsgd" else ROUND_SEED_BITS

    @property
    def sends_seed(self) -> bool:
        """Whether the decoder needs the client's seed (so it travels)."""
        if self.name == "pipeline":
            return pipeline.sends_seed(self.stages)
        return self.name in _SEEDED

    def width(self, field: str, n: int) -> int:
        """Wire width in bits of one element of a payload field of an n-value tensor."""
        if self.name == "pipeline":
            return pipeline.field_bits(self.stages, n, field)
        return self.bits if field == "codes" else FLOAT_BITS


# ----- one tensor --------------------------------------------------------------------
def _seed(base: tf.Tensor, index: int, purpose: int) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(
        tf.random.experimental.stateless_fold_in(base, index), purpose)


def encode_tensor(method: Method, x: tf.Tensor, seed: tf.Tensor, index: int) -> dict:
    """The payload fields of tensor number `index` of a client's update."""
    shape = tuple(x.shape)
    flat = tf.reshape(x, [-1])
    n = flat.shape[0]
    if method.name == "quantize":
        return quantize(flat, method.bits, _seed(seed, index, 1))
    if method.name == "pipeline":
        return pipeline.encode(method.stages, flat, _seed(seed, index, 2))
    if method.name == "rotate_quantize":
        rotated = rotate(flat, _seed(seed, index, 0))
        return quantize(rotated, method.bits, _seed(seed, index, 1))
    if method.name == "random_mask":
        return {"values": tf.boolean_mask(flat, mask(n, method.keep_fraction,
                                                     _seed(seed, index, 0)))}
    if method.name in _LOW_RANK:
        if not is_restricted(shape, method.rank):
            return {"dense": x}
        m, cols = matrix_shape(shape)
        matrix = tf.reshape(x, [m, cols])
        if m >= cols:
            a = basis(m, method.rank, _seed(seed, index, 0))
            return {"factor": tf.matmul(a, matrix, transpose_a=True)}
        a = basis(cols, method.rank, _seed(seed, index, 0))
        return {"factor": tf.matmul(matrix, a)}
    raise ValueError(f"unknown compression method {method.name}")


def decode_tensor(method: Method, payload: dict, shape: tuple[int, ...], seed: tf.Tensor,
                  index: int) -> tf.Tensor:
    """The decoded tensor of `shape` from its payload (what the server computes)."""
    n = int(np.prod(shape))
    if method.name == "quantize":
        flat = dequantize(payload, method.bits)
    elif method.name == "pipeline":
        flat = pipeline.decode(method.stages, payload, n, _seed(seed, index, 2))
    elif method.name == "rotate_quantize":
        flat = unrotate(dequantize(payload, method.bits), n, _seed(seed, index, 0))
    elif method.name == "random_mask":
        indices = tf.where(mask(n, method.keep_fraction, _seed(seed, index, 0)))
        flat = tf.scatter_nd(indices, payload["values"] / method.keep_fraction, [n])
    elif method.name in _LOW_RANK:
        if "dense" in payload:
            return payload["dense"]
        m, cols = matrix_shape(shape)
        if m >= cols:
            flat = tf.matmul(basis(m, method.rank, _seed(seed, index, 0)), payload["factor"])
        else:
            a = basis(cols, method.rank, _seed(seed, index, 0))
            flat = tf.matmul(payload["factor"], a, transpose_b=True)
        if method.name == "low_rank_unbiased":  # E[A A^T] = (k / m) I
            flat = flat * (max(m, cols) / method.rank)
    else:
        raise ValueError(f"unknown compression method {method.name}")
    return tf.reshape(flat, shape)


# ----- one client's update -----------------------------------------------------------
def client_hash(tensors: list[tf.Tensor], experiment_seed: int) -> tf.Tensor:
    """32-bit fingerprint of a client's update and the experiment seed."""
    flat = tf.concat([tf.reshape(t, [-1]) for t in tensors]
                     + [tf.constant([float(experiment_seed)], tf.float32)], axis=0)
    as_bytes = tf.reshape(tf.bitcast(tf.cast(flat, tf.float32), tf.uint8), [1, -1])
    return tf.bitcast(tf.fingerprint(as_bytes)[0, :4], tf.int32)


def client_seed(round_seed: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
    """The stateless seed [r, h] of one client in one round."""
    return tf.stack([tf.cast(round_seed, tf.int32), tf.cast(h, tf.int32)])


def encode(method: Method, tensors: list[tf.Tensor], round_seed: tf.Tensor,
           experiment_seed: int = 0) -> collections.OrderedDict:
    """A client's payload: one field dict per tensor, plus its seed part h."""
    h = client_hash(tensors, experiment_seed)
    seed = client_seed(round_seed, h)
    fields = [encode_tensor(method, t, seed, i) for i, t in enumerate(tensors)]
    payload = collections.OrderedDict(tensors=fields)
    payload["seed"] = h if method.sends_seed else tf.zeros([0], tf.int32)
    return payload


def decode(method: Method, payload: dict, shapes: list[tuple[int, ...]],
           round_seed: tf.Tensor) -> list[tf.Tensor]:
    """The server's decode of one payload, given only the payload and its own r."""
    h = payload["seed"] if method.sends_seed else tf.constant(0, tf.int32)
    seed = client_seed(round_seed, h)
    return [decode_tensor(method, fields, shape, seed, i)
            for i, (fields, shape) in enumerate(zip(payload["tensors"], shapes, strict=True))]


def payload_bits(method: Method, payload: dict, shapes: list[tuple[int, ...]]) -> tf.Tensor:
    """Bits on the wire of one payload: every element at its field's width (int64)."""
    total = tf.constant(0, tf.int64)
    for fields, shape in zip(payload["tensors"], shapes, strict=True):
        for name, tensor in fields.items():
            width = method.width(name, int(np.prod(shape)))
            total += tf.size(tensor, out_type=tf.int64) * width
    return total + tf.size(payload["seed"], out_type=tf.int64) * SEED_BITS


def expected_bits(method: Method, shapes: list[tuple[int, ...]]) -> float:
    """The closed-form payload size in bits for updates of these tensor shapes
    (for `random_mask` its expectation: the number kept is random)."""
    total = SEED_BITS if method.sends_seed else 0
    for shape in shapes:
        n = int(np.prod(shape))
        if method.name == "quantize":
            total += n * method.bits + 2 * FLOAT_BITS
        elif method.name == "pipeline":
            total += pipeline.expected_bits(method.stages, n)
        elif method.name == "rotate_quantize":
            total += padded_size(n) * method.bits + 2 * FLOAT_BITS
        elif method.name == "random_mask":  # in expectation: the mask is random
            total += method.keep_fraction * n * FLOAT_BITS
        elif method.name in _LOW_RANK:
            if is_restricted(shape, method.rank):
                total += method.rank * min(matrix_shape(shape)) * FLOAT_BITS
            else:
                total += n * FLOAT_BITS
        elif method.name == "fetchsgd":  # an R x C float32 table
            total += (method.sketch_rows * sketch.columns(n, method.sketch_columns_fraction)
                      * FLOAT_BITS)
    return total


# ----- the TFF aggregator ------------------------------------------------------------
class CompressedSumFactory(tff.aggregators.UnweightedAggregationFactory):
    """Sum of client values, each encoded on its client and decoded by the server.

    State: the round counter r (int32), broadcast each round. Measurements:
    `compression_bits_up` (int64, payload bits summed over clients) and
    `compression_clients` (payloads summed).
    """

    def __init__(self, method: Method, experiment_seed: int = 0):
        if method.name not in _SEEDED + ("quantize", "pipeline"):
            raise ValueError(f"CompressedSumFactory has no method {method.name}")
        self._method = method
        self._seed = experiment_seed

    def create(self, value_type) -> tff.templates.AggregationProcess:
        method, experiment_seed = self._method, self._seed
        specs = tff.types.type_to_tf_tensor_specs(value_type)
        flat_specs = tf.nest.flatten(specs)
        shapes = [tuple(s.shape.as_list()) for s in flat_specs]
        round_type = tff.TensorType(np.int32)

        @tff.tensorflow.computation(value_type, round_type)
        def encode_fn(value, round_seed):
            payload = encode(method, tf.nest.flatten(value), round_seed, experiment_seed)
            return payload, payload_bits(method, payload, shapes)

        payload_type = encode_fn.type_signature.result[0]

        @tff.tensorflow.computation(payload_type, round_type)
        def decode_fn(payload, round_seed):
            return tf.nest.pack_sequence_as(specs, decode(method, payload, shapes, round_seed))

        @tff.tensorflow.computation()
        def one():
            return tf.constant(1, tf.int32)

        @tff.tensorflow.computation(round_type)
        def advance(round_seed):
            return round_seed + 1

        @tff.federated_computation()
        def init_fn():
            return tff.federated_value(np.int32(0), tff.SERVER)

        @tff.federated_computation(init_fn.type_signature.result,
                                   tff.FederatedType(value_type, tff.CLIENTS))
        def next_fn(state, value):
            round_seed = tff.federated_broadcast(state)
            encoded = tff.federated_map(encode_fn, (value, round_seed))
            payloads, bits = encoded[0], encoded[1]
            decoded = tff.federated_map(decode_fn, (payloads, round_seed))
            clients = tff.federated_sum(tff.federated_eval(one, tff.CLIENTS))
            measurements = tff.federated_zip(collections.OrderedDict([
                (BITS_KEY, tff.federated_sum(bits)), (CLIENTS_KEY, clients)]))
            return tff.templates.MeasuredProcessOutput(
                state=tff.federated_map(advance, state),
                result=tff.federated_sum(decoded), measurements=measurements)

        return tff.templates.AggregationProcess(init_fn, next_fn)


# ----- TFF's own compression (the reference point) ----------------------------------
def tff_payload_bits(shapes: list[tuple[int, ...]]) -> tuple[int, int]:
    """(bits up, extra bits down) of `tff.learning.compression_aggregator`.

    Built from the same tensor_encoding encoders it uses (8-bit uniform
    quantisation, bit-packed, of tensors above 20,000 elements; others sent
    as they are), by encoding a tensor of each shape and counting every
    encoded tensor; down: the encode and decode-before-sum parameters TFF
    broadcasts to the clients (which it also sends back with the payload).
    """
    # Here: TF-MOT's encoders load only for --compression=tff's payload count.
    from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

    up = down = 0
    for shape in shapes:
        spec = tf.TensorSpec(shape, tf.float32)
        if int(np.prod(shape)) > 20000:
            encoder = te.encoders.as_gather_encoder(te.encoders.uniform_quantization(8), spec)
        else:
            encoder = te.encoders.as_gather_encoder(te.encoders.identity(), spec)
        encode_params, before_sum, _ = encoder.get_params(encoder.initial_state())
        x = tf.random.stateless_normal(shape, seed=[0, 0])
        encoded, _ = encoder.encode(x, encode_params)
        sent = tf.nest.flatten(encoded) + tf.nest.flatten(before_sum)
        up += sum(_tensor_bits(t) for t in sent)
        down += sum(_tensor_bits(t) for t in tf.nest.flatten((encode_params, before_sum)))
    return up, down


def _tensor_bits(t) -> int:
    t = tf.convert_to_tensor(t)
    return int(tf.size(t)) * t.dtype.size * 8

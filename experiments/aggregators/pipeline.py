"""Composed compression: stages applied in order on the client, inverted on the server.

A pipeline (`--compression=pipeline --compression_stages=...`) encodes each
tensor of an update, flattened to n values, through its stages in order, and
the server decodes in reverse (Konecny et al. 2016's sketched updates compose
subsampling, rotation and quantisation this way):

* `subsample:P` keeps k = max(1, round(P n)) coordinates, a uniform subset
  drawn from the client's seed (so no indices travel), scaled by n / k on
  decoding: unbiased.
* `topk:F` keeps the k = max(1, ceil(F n)) coordinates of largest magnitude;
  their indices travel (ceil(log2 n) bits each). Biased: the rest is dropped.
* `sketch:F` is a one-row count sketch (Charikar et al. 2002) of
  c = max(1, round(F n)) buckets: each value goes, with a random sign, into a
  random bucket (both from the seed); the server reads each coordinate back as
  its sign times its bucket: unbiased, linear (so decoding each client and
  summing equals decoding the summed sketch), with the other values sharing
  the bucket as noise. FetchSGD's top-k unsketching of the summed sketch is
  `--compression=fetchsgd` (experiments.aggregators.fetchsgd).
* `rotate` multiplies by random signs and the block Walsh-Hadamard matrix (as
  `rotate_quantize`; the zero padding to whole blocks travels and is counted).
* `quantize:B` (last) quantises stochastically to B bits between the vector's
  min and max (unbiased); without it the values travel as float32.
* `sign` (last) sends each value's sign (1 bit) and the mean magnitude
  (float32): the scaled sign of signSGD with error feedback. Biased.

Each stage's randomness comes from the client's seed folded with the stage's
position, so stages never share random numbers. Every length is known from n
and the stages, so the payload's bits are exact: B or 32 per value, 64 for
min and max, the index width per index, plus the 32-bit seed once per client
when a stage needs it (subsample, rotate). A composition without `topk` is
unbiased (each stage is, given the others' randomness).
"""

from __future__ import annotations

import math

import tensorflow as tf

from experiments.aggregators.settings import Stage
from experiments.aggregators.transforms import (
    dequantize,
    padded_size,
    quantize,
    rotate,
    unrotate,
)

FLOAT_BITS = 32
SEEDED = ("subsample", "sketch", "rotate")  # stages whose decoder needs the client's seed
_SHRINK = ("subsample", "topk", "sketch")  # stages that change the length to `kept`


def kept(stage: Stage, n: int) -> int:
    """How many values a subsample / topk / sketch stage turns n values into."""
    if stage.name in ("subsample", "sketch"):
        return max(1, round(stage.value * n))
    return max(1, math.ceil(stage.value * n))


def lengths(stages: tuple[Stage, ...], n: int) -> list[int]:
    """The vector's length entering each stage, then after the last."""
    out = [n]
    for stage in stages:
        if stage.name in _SHRINK:
            out.append(kept(stage, out[-1]))
        elif stage.name == "rotate":
            out.append(padded_size(out[-1]))
        else:
            out.append(out[-1])
    return out


def index_bits(n: int) -> int:
    """Bits of one index into n values."""
    return max(1, math.ceil(math.log2(n)))


def _stage_seed(seed: tf.Tensor, depth: int) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(seed, 1000 + depth)


def _hashes(n: int, buckets: int, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Each of n coordinates' bucket in [0, buckets) and sign (+-1), from the seed."""
    bucket = tf.random.stateless_uniform([n], seed=seed, maxval=buckets, dtype=tf.int32)
    coin = tf.random.stateless_uniform([n], seed=tf.random.experimental.stateless_fold_in(
        seed, 1))
    return bucket, tf.where(coin < 0.5, -1.0, 1.0)


def _subset(n: int, k: int, seed: tf.Tensor) -> tf.Tensor:
    """k distinct indices of n, uniformly at random (the k smallest random keys)."""
    keys = tf.random.stateless_uniform([n], seed=seed)
    return tf.math.top_k(-keys, k=k, sorted=False).indices


def encode(stages: tuple[Stage, ...], x: tf.Tensor, seed: tf.Tensor, depth: int = 0
           ) -> dict:
    """The payload fields of a flat vector x: codes / lo / hi or values, and indices."""
    if not stages:
        return {"values": x}
    stage, rest = stages[0], stages[1:]
    s = _stage_seed(seed, depth)
    n = x.shape[0]
    if stage.name == "quantize":
        return quantize(x, int(stage.value), s)
    if stage.name == "sign":
        return {"signs": tf.cast(x >= 0, tf.int32), "scale": tf.reduce_mean(tf.abs(x))}
    if stage.name == "rotate":
        return encode(rest, rotate(x, s), seed, depth + 1)
    if stage.name == "sketch":
        buckets = kept(stage, n)
        bucket, sign = _hashes(n, buckets, s)
        table = tf.math.unsorted_segment_sum(sign * x, bucket, buckets)
        return encode(rest, table, seed, depth + 1)
    if stage.name == "subsample":
        return encode(rest, tf.gather(x, _subset(n, kept(stage, n), s)), seed, depth + 1)
    top = tf.math.top_k(tf.abs(x), k=kept(stage, n), sorted=False).indices
    return {"indices": top, **encode(rest, tf.gather(x, top), seed, depth + 1)}


def decode(stages: tuple[Stage, ...], payload: dict, n: int, seed: tf.Tensor,
           depth: int = 0) -> tf.Tensor:
    """The server's estimate of the flat vector of n values from its payload."""
    if not stages:
        return payload["values"]
    stage, rest = stages[0], stages[1:]
    s = _stage_seed(seed, depth)
    if stage.name == "quantize":
        return dequantize(payload, int(stage.value))
    if stage.name == "sign":
        return (2.0 * tf.cast(payload["signs"], tf.float32) - 1.0) * payload["scale"]
    if stage.name == "rotate":
        return unrotate(decode(rest, payload, padded_size(n), seed, depth + 1), n, s)
    k = kept(stage, n)
    inner = decode(rest, payload, k, seed, depth + 1)
    if stage.name == "sketch":
        bucket, sign = _hashes(n, k, s)
        return tf.gather(inner, bucket) * sign
    if stage.name == "subsample":
        indices = _subset(n, k, s)
        inner = inner * (n / k)
    else:
        indices = payload["indices"]
    return tf.scatter_nd(indices[:, None], inner, [n])


def field_bits(stages: tuple[Stage, ...], n: int, field: str) -> int:
    """Wire width of one element of a payload field for a tensor of n values."""
    if field == "codes":
        return int(stages[-1].value)
    if field == "signs":
        return 1
    if field == "indices":
        names = [s.name for s in stages]
        return index_bits(lengths(stages, n)[names.index("topk")])
    return FLOAT_BITS  # values, lo, hi


def expected_bits(stages: tuple[Stage, ...], n: int) -> int:
    """The payload bits of one tensor of n values (the seed is counted per client)."""
    sizes = lengths(stages, n)
    last = stages[-1]
    if last.name == "quantize":
        total = sizes[-1] * int(last.value) + 2 * FLOAT_BITS
    elif last.name == "sign":
        total = sizes[-1] + FLOAT_BITS
    else:
        total = sizes[-1] * FLOAT_BITS
    for stage, size in zip(stages, sizes, strict=False):
        if stage.name == "topk":
            total += kept(stage, size) * index_bits(size)
    return total


def sends_seed(stages: tuple[Stage, ...]) -> bool:
    """Whether the decoder needs the client's seed (so it travels, 32 bits)."""
    return any(s.name in SEEDED for s in stages)


def unbiased(stages: tuple[Stage, ...]) -> bool:
    """Whether the decoded update is an unbiased estimate (no top-k, no sign stage)."""
    return all(s.name not in ("topk", "sign") for s in stages)

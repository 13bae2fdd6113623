"""The building blocks of update compression: quantisation, rotation, masks, bases.

Each is a pure TensorFlow function of a flat (or matrix) tensor and a stateless
seed, used by the methods of experiments.aggregators.compression and by the
stages of experiments.aggregators.pipeline, so both encode identically.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

MAX_BLOCK = 2**14  # largest Hadamard block


# ----- quantisation ------------------------------------------------------------------
def _step(lo: tf.Tensor, hi: tf.Tensor, bits: int) -> tf.Tensor:
    levels = float(2**bits - 1)
    return tf.where(hi > lo, (hi - lo) / levels, tf.ones_like(lo))


def quantize(flat: tf.Tensor, bits: int, seed: tf.Tensor) -> dict:
    """Unbiased stochastic uniform quantisation of a rank-1 tensor to `bits` bits."""
    lo, hi = tf.reduce_min(flat), tf.reduce_max(flat)
    step = _step(lo, hi, bits)
    noise = tf.random.stateless_uniform(tf.shape(flat), seed=seed, dtype=flat.dtype)
    codes = tf.floor((flat - lo) / step + noise)
    codes = tf.clip_by_value(codes, 0.0, float(2**bits - 1))
    return {"codes": tf.cast(codes, tf.int32), "lo": lo, "hi": hi}


def dequantize(payload: dict, bits: int) -> tf.Tensor:
    """Inverse of `quantize` (up to the rounding): lo + code * step."""
    lo, hi = payload["lo"], payload["hi"]
    return lo + tf.cast(payload["codes"], lo.dtype) * _step(lo, hi, bits)


# ----- randomized Hadamard rotation -------------------------------------------------
def block_size(n: int) -> int:
    """Hadamard block for a tensor of n elements: largest power of two up to
    MAX_BLOCK whose padding is at most n / 32 (or 1 element for tiny tensors)."""
    block = min(MAX_BLOCK, 1 << max(0, (n - 1).bit_length()))
    while block > 1 and _padded(n, block) - n > n // 32:
        block //= 2
    return block


def _padded(n: int, block: int) -> int:
    return -(-n // block) * block


def padded_size(n: int) -> int:
    """Elements of an n-element tensor after padding to whole Hadamard blocks."""
    return _padded(n, block_size(n))


def sylvester(size: int) -> np.ndarray:
    """The size x size Sylvester Hadamard matrix (entries +-1), size a power of two."""
    h = np.ones((1, 1), np.float32)
    while h.shape[0] < size:
        h = np.block([[h, h], [h, -h]])
    return h


def hadamard(x: tf.Tensor) -> tf.Tensor:
    """Orthonormal Walsh-Hadamard transform H/sqrt(B) of each row of x [m, B].

    H_B = H_a (x) H_b (x) H_c (Kronecker, Sylvester order) with a b c = B, so
    three small matrix products over a [m, a, b, c] view replace the log2(B)
    butterfly passes (about 10x faster on CPU).
    """
    rows, width = x.shape[0], x.shape[1]
    k = width.bit_length() - 1
    a, b, c = (1 << (k // 3 + (1 if i < k % 3 else 0)) for i in range(3))
    y = tf.reshape(x, [rows, a, b, c])
    y = tf.einsum("rabc,dc->rabd", y, tf.constant(sylvester(c)))
    y = tf.einsum("rabc,db->radc", y, tf.constant(sylvester(b)))
    y = tf.einsum("rabc,da->rdbc", y, tf.constant(sylvester(a)))
    return tf.reshape(y, [rows, width]) / math.sqrt(width)


def _signs(n: int, seed: tf.Tensor) -> tf.Tensor:
    coin = tf.random.stateless_uniform([n], seed=seed)
    return tf.where(coin < 0.5, -1.0, 1.0)


def rotate(flat: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """H D x per block (flat padded with zeros to whole blocks)."""
    n = flat.shape[0]
    block, total = block_size(n), padded_size(n)
    padded = tf.pad(flat, [[0, total - n]]) * _signs(total, seed)
    return tf.reshape(hadamard(tf.reshape(padded, [total // block, block])), [-1])


def unrotate(rotated: tf.Tensor, n: int, seed: tf.Tensor) -> tf.Tensor:
    """Inverse of `rotate`: D H y, truncated to the first n elements."""
    block, total = block_size(n), padded_size(n)
    x = tf.reshape(hadamard(tf.reshape(rotated, [total // block, block])), [-1])
    return (x * _signs(total, seed))[:n]


# ----- random mask -------------------------------------------------------------------
def mask(n: int, keep_fraction: float, seed: tf.Tensor) -> tf.Tensor:
    """Which of n coordinates are kept: each independently with probability p."""
    return tf.random.stateless_uniform([n], seed=seed) < keep_fraction


# ----- low rank ----------------------------------------------------------------------
def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(m, n) of a kernel viewed as a matrix, or None for biases and scalars."""
    if len(shape) < 2:
        return None
    return int(np.prod(shape[:-1])), int(shape[-1])


def is_restricted(shape: tuple[int, ...], rank: int) -> bool:
    """Whether low_rank restricts this tensor (else it travels as float32)."""
    matrix = matrix_shape(shape)
    return matrix is not None and min(matrix) > rank


def basis(rows: int, rank: int, seed: tf.Tensor) -> tf.Tensor:
    """A seeded [rows, rank] matrix with orthonormal columns."""
    gaussian = tf.random.stateless_normal([rows, rank], seed=seed)
    return tf.linalg.qr(gaussian).q

"""Error feedback for compressed uploads (Seide et al. 2014; Karimireddy et al. 2019, EF-SGD).

A biased compressor (top-k, low-rank) drops part of every update for good. With
error feedback each client keeps what its last uploads lost, e_i, and adds it
to its next update before compressing:

    v = w_i u_i + e_i,    sent = C(v),    e_i <- v - D(C(v)),

so what is dropped in one round is sent later, and the sum of what the server
decodes over rounds tracks the sum of the updates. The residual is state on
the client (experiments.algorithms.client_state: created as zeros, changed
only by the client's own round, saved with every checkpoint); it never leaves
the client. The encoding is experiments.aggregators.compression's, with the
round as the broadcast counter, so the payload and its bits are those of the
same method without feedback.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from experiments.aggregators import compression
from experiments.algorithms.client_state import ClientStates


class ErrorFeedback:
    """The clients' residuals and one round of compressed uploads with them."""

    def __init__(self, method: compression.Method, shapes: Sequence[tuple[int, ...]],
                 experiment_seed: int):
        self._method = method
        self._shapes = [tuple(s) for s in shapes]
        self._seed = experiment_seed
        self.states = ClientStates([np.zeros(s, np.float32) for s in self._shapes])

    def upload(self, client: int, value: Sequence[np.ndarray], round_num: int
               ) -> tuple[list[np.ndarray], int]:
        """What the server decodes from client `client`'s (weighted) update `value`
        this round, and the payload's bits; updates the client's residual."""
        corrected = [np.asarray(v, np.float32) + e
                     for v, e in zip(value, self.states.get(client), strict=True)]
        tensors = [tf.constant(c) for c in corrected]
        round_seed = tf.constant(round_num, tf.int32)
        payload = compression.encode(self._method, tensors, round_seed, self._seed)
        decoded = [d.numpy() for d in compression.decode(self._method, payload,
                                                         self._shapes, round_seed)]
        self.states.put(client, [c - d for c, d in zip(corrected, decoded, strict=True)])
        return decoded, int(compression.payload_bits(self._method, payload, self._shapes))

    def mean(self, updates: Sequence[Sequence[np.ndarray]], weights: Sequence[float],
             clients: Sequence[int], round_num: int) -> tuple[list[np.ndarray], dict]:
        """The weighted mean of the decoded uploads, and the compression measurements
        (payload bits summed over the clients, and their number) traffic reads."""
        total = [np.zeros(s, np.float64) for s in self._shapes]
        bits = 0
        for update, weight, client in zip(updates, weights, clients, strict=True):
            value = [np.float32(weight) * np.asarray(u, np.float32) for u in update]
            decoded, sent = self.upload(int(client), value, round_num)
            total = [t + d for t, d in zip(total, decoded, strict=True)]
            bits += sent
        mean = [(t / float(np.sum(weights))).astype(np.float32) for t in total]
        return mean, {compression.BITS_KEY: bits, compression.CLIENTS_KEY: len(updates)}

"""Secure aggregation (Bonawitz et al. 2017) simulated in numpy, with its cost.

Each client turns its update into integers mod 2^m (clip, stochastic rounding
to b bits, m = b + ceil(log2 n) so the sum of n clients cannot wrap) and adds
masks before anything leaves it:

    y_u = x_u + PRG(b_u) + sum_{v > u} PRG(s_uv) - sum_{v < u} PRG(s_uv)   (mod 2^m)

`s_uv` comes from a Diffie-Hellman key agreement between u and v (so the pair
agrees on it without telling the server), `b_u` is u's own "self mask" seed
(double masking). Both u's DH secret key and `b_u` are Shamir-shared t-of-n
among the clients, so after the masked inputs are in:

- for every client that sent y_u, the survivors reveal shares of `b_u`;
- for every client that dropped after the keys were shared but before sending
  y_u, the survivors reveal shares of its DH secret key, from which the server
  recomputes the pairwise masks the others added for it and removes them.

With fewer than t clients left in any round, the round fails with
`SecureAggregationError` (one line). The pairwise masks cancel in the sum, so
the server learns exactly sum_u x_u over the clients whose y_u it received
and nothing about any single x_u (each y_u is uniform mod 2^m).

Threat model of this simulation: every party lives in one Python process, the
channels between clients (which in the protocol run through the server,
encrypted) are not encrypted here, and the key agreement is a toy DH modulo
the Mersenne prime 2^127 - 1 (a stand-in with the right algebra, not secure
parameters). It shows the arithmetic, the dropout recovery and the message
and bit counts of the honest-but-curious protocol, not its cryptographic
strength.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence

import numpy as np

from experiments.core.errors import UsageError

PRIME = 2**127 - 1  # Shamir field and toy DH group modulus
GENERATOR = 3
FIELD_BITS = 128  # a field element / public key on the wire
FLOAT_BITS = 32


class SecureAggregationError(UsageError):
    """The protocol cannot finish (too few clients left); the message is one line,
    and a training run stops on it like on any usage error (exit code 2)."""


def modulus_bits(bits: int, num_clients: int) -> int:
    """Bits m of the modular sum: b-bit inputs of n clients never wrap mod 2^m."""
    return bits + max(1, math.ceil(math.log2(max(num_clients, 2))))


def dropped_count(fraction: float, num_clients: int) -> int:
    """Clients of a round of n that drop after sharing keys (--secagg_dropout)."""
    return int(round(fraction * num_clients))


def threshold_count(fraction: float, num_clients: int) -> int:
    """t of the t-of-n sharing for a threshold given as a fraction of the cohort."""
    return min(num_clients, max(1, math.ceil(fraction * num_clients - 1e-9)))


# ---- quantisation ---------------------------------------------------------


def quantise(x: np.ndarray, bits: int, clip: float, rng: np.random.Generator) -> np.ndarray:
    """Clips to [-clip, clip] and rounds stochastically (unbiased) to signed
    integers in [-(2^(b-1) - 1), 2^(b-1) - 1]; returns int64."""
    levels = 2 ** (bits - 1) - 1
    scaled = np.clip(np.asarray(x, np.float64), -clip, clip) * (levels / clip)
    floor = np.floor(scaled)
    up = rng.random(scaled.shape) < (scaled - floor)
    return np.clip(floor + up, -levels, levels).astype(np.int64)


def dequantise(total: np.ndarray, bits: int, clip: float) -> np.ndarray:
    """Signed integer sums back to floats (the inverse scaling of `quantise`)."""
    return np.asarray(total, np.float64) * (clip / (2 ** (bits - 1) - 1))


def to_ring(x: np.ndarray, m: int) -> np.ndarray:
    """Signed int64 to its residue mod 2^m (uint64)."""
    return x.astype(np.uint64) & np.uint64((1 << m) - 1)  # two's complement wraps


def from_ring(y: np.ndarray, m: int) -> np.ndarray:
    """Residues mod 2^m to signed int64 in [-2^(m-1), 2^(m-1))."""
    y = y.astype(np.int64) if m < 64 else y.view(np.int64)
    return np.where(y >= (1 << (m - 1)), y - (1 << m), y) if m < 64 else y


# ---- primitives -----------------------------------------------------------


def prg(seed: int, size: int, m: int) -> np.ndarray:
    """The mask expanded from a seed: `size` uniform integers mod 2^m (uint64)."""
    words = np.random.Philox(key=seed % 2**128).random_raw(size)  # uniform uint64
    return words & np.uint64((1 << m) - 1) if m < 64 else words


def self_mask(seed: int, size: int, m: int) -> np.ndarray:
    """PRG(b_u): the client's own mask, removed once t survivors reveal b_u's shares."""
    return prg(seed, size, m)


def pair_mask(secret: int, size: int, m: int) -> np.ndarray:
    """PRG(s_uv): the mask u and v add with opposite signs, so it cancels in the sum."""
    return prg(secret, size, m)


def _kdf(shared: int) -> int:
    """A 128-bit PRG seed from a DH shared secret."""
    return int.from_bytes(hashlib.sha256(shared.to_bytes(16, "big")).digest()[:16], "big")


def agree(secret_key: int, other_public_key: int) -> int:
    """Key agreement: g^(a b) mod p hashed to a seed, the same from either side."""
    return _kdf(pow(other_public_key, secret_key, PRIME))


def shamir_split(secret: int, t: int, n: int, rng: np.random.Generator
                 ) -> list[tuple[int, int]]:
    """n shares (x, f(x)) of `secret` with a random degree t-1 polynomial mod PRIME."""
    coefficients = [secret] + [_field_element(rng) for _ in range(t - 1)]
    shares = []
    for x in range(1, n + 1):
        y = 0
        for c in reversed(coefficients):
            y = (y * x + c) % PRIME
        shares.append((x, y))
    return shares


def shamir_reconstruct(shares: Sequence[tuple[int, int]]) -> int:
    """The secret f(0) from at least t shares (Lagrange interpolation mod PRIME)."""
    secret = 0
    for j, (xj, yj) in enumerate(shares):
        num, den = 1, 1
        for k, (xk, _) in enumerate(shares):
            if k != j:
                num = num * (-xk) % PRIME
                den = den * (xj - xk) % PRIME
        secret = (secret + yj * num * pow(den, -1, PRIME)) % PRIME
    return secret


def _field_element(rng: np.random.Generator) -> int:
    high, low = (int(w) for w in rng.integers(0, 2**63, size=2, dtype=np.int64))
    return ((high << 63) | low) % PRIME


# ---- the protocol ---------------------------------------------------------


@dataclasses.dataclass
class Cost:
    """What the protocol costs on top of sending a float32 update."""

    upload_bits: list[int] = dataclasses.field(default_factory=list)  # per client
    download_bits: list[int] = dataclasses.field(default_factory=list)
    messages: int = 0  # client->server and server->client, all rounds

    def mean_upload_bits(self) -> float:
        """Mean bits uploaded per client that took part (all four rounds)."""
        return float(np.mean(self.upload_bits)) if self.upload_bits else 0.0


@dataclasses.dataclass
class ServerView:
    """Everything the (honest-but-curious) server receives in one round.

    Shares between clients travel encrypted through the server in the
    protocol, so only the shares revealed in the unmasking round are here.
    """

    public_keys: dict[int, int]
    masked: dict[int, np.ndarray]  # y_u mod 2^m, including inputs that came late
    self_seed_shares: dict[int, list[tuple[int, int]]]  # b_u's, for inputs in the sum
    secret_key_shares: dict[int, list[tuple[int, int]]]  # sk_v's, for dropped clients
    modulus_bits: int
    size: int


@dataclasses.dataclass
class Outcome:
    """The decoded sum, who it covers, what the server saw and what it cost."""

    total: np.ndarray  # sum of x_u (signed int64) over `included`
    included: list[int]  # clients whose input is in the sum
    masked: dict[int, np.ndarray]  # what the server received in time, y_u mod 2^m
    threshold: int
    modulus_bits: int
    cost: Cost
    view: ServerView


class _Client:
    """One client's keys and the shares it holds for the others."""

    def __init__(self, index: int, rng: np.random.Generator):
        self.index = index
        self.secret_key = _field_element(rng) or 1
        self.public_key = pow(GENERATOR, self.secret_key, PRIME)
        self.self_seed = _field_element(rng)
        self.held: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}

    def masked_input(self, x: np.ndarray, public_keys: dict[int, int], m: int) -> np.ndarray:
        """y_u = x_u + PRG(b_u) + sum_{v>u} PRG(s_uv) - sum_{v<u} PRG(s_uv) mod 2^m."""
        y = to_ring(x, m) + self_mask(self.self_seed, x.size, m)
        for v, pk in public_keys.items():
            if v == self.index:
                continue
            mask = pair_mask(agree(self.secret_key, pk), x.size, m)
            if v > self.index:
                y += mask
            else:
                y -= mask
        return y & np.uint64((1 << m) - 1) if m < 64 else y


def run(inputs: Sequence[np.ndarray], bits: int, threshold: int, seed: int,
        drop_before_input: Sequence[int] = (), drop_before_unmask: Sequence[int] = (),
        arrive_late: Sequence[int] = (), modulus: int | None = None) -> Outcome:
    """One round of the protocol over n clients' signed integer vectors.

    `inputs[u]` are client u's quantised values (each in b bits, signed).
    Clients in `drop_before_input` vanish after the keys were shared (their
    input is lost, their pairwise masks are recovered); those in
    `drop_before_unmask` send their masked input and then vanish (their input
    counts, they just do not help unmask). Clients in `arrive_late` send their
    masked input after the server closed that round: they are treated as dropped
    (their pairwise masks are recovered) and their input is not in the sum, but
    the server holds it (`Outcome.view`). Raises SecureAggregationError when
    fewer than `threshold` clients remain for a round. `modulus` fixes the field
    to 2^modulus bits, where the inputs are already residues meant to wrap
    (distributed DP); by default it is widened so that the sum never wraps.
    """
    n, size = len(inputs), int(np.size(inputs[0])) if len(inputs) else 0
    m = modulus or modulus_bits(bits, n)
    rng = np.random.default_rng([seed, 0x5EC])
    cost = Cost()
    _need(n, threshold, "started")
    clients = [_Client(u, rng) for u in range(n)]
    up = {u: 0 for u in range(n)}
    down = {u: 0 for u in range(n)}

    # Round 0, AdvertiseKeys: each sends its public key; all keys are broadcast.
    public_keys = {c.index: c.public_key for c in clients}
    for u in range(n):
        up[u] += FIELD_BITS
        down[u] += FIELD_BITS * n
    cost.messages += 2 * n

    # Round 1, ShareKeys: shares of the DH secret key and of b_u, one pair per
    # other client (encrypted and routed by the server in the protocol).
    for c in clients:
        sk_shares = shamir_split(c.secret_key, threshold, n, rng)
        b_shares = shamir_split(c.self_seed, threshold, n, rng)
        for v in range(n):
            clients[v].held[c.index] = (sk_shares[v], b_shares[v])
        up[c.index] += 2 * FIELD_BITS * (n - 1)
        for v in range(n):
            if v != c.index:
                down[v] += 2 * FIELD_BITS
    cost.messages += 2 * n

    # Round 2, MaskedInputCollection. A late client's input arrives after the
    # server closed the round: it counts as dropped, but the server keeps what came.
    missing = set(drop_before_input) | set(arrive_late)
    sent = [u for u in range(n) if u not in missing]
    _need(len(sent), threshold, "sent their masked input")
    masked = {}
    for u in sent:
        masked[u] = clients[u].masked_input(np.asarray(inputs[u], np.int64).ravel(),
                                            public_keys, m)
        up[u] += m * size
        down[u] += 32 * len(sent)  # the list of clients that made it
    cost.messages += 2 * len(sent)
    view = ServerView(public_keys, dict(masked), {}, {}, m, size)
    for u in arrive_late:
        view.masked[u] = clients[u].masked_input(np.asarray(inputs[u], np.int64).ravel(),
                                                 public_keys, m)

    # Round 3, Unmasking: survivors reveal b-shares of senders, sk-shares of the dropped.
    dropped = [u for u in range(n) if u not in set(sent)]
    survivors = [u for u in sent if u not in set(drop_before_unmask)]
    _need(len(survivors), threshold, "answered the unmasking round")
    for u in survivors:
        up[u] += FIELD_BITS * (n - 1)
    cost.messages += len(survivors)
    helpers = survivors[:threshold]
    # Each helper reveals, for every other client, one share: of b_u if u's masked
    # input arrived in time, of u's DH secret key if it did not. Never both.
    view.self_seed_shares = {u: [clients[h].held[u][1] for h in helpers] for u in sent}
    view.secret_key_shares = {v: [clients[h].held[v][0] for h in helpers]
                              for v in dropped}
    total = np.zeros(size, np.uint64)
    for u in sent:
        total += masked[u]
        b_u = shamir_reconstruct(view.self_seed_shares[u])
        total -= self_mask(b_u, size, m)
    for v in dropped:
        sk_v = shamir_reconstruct(view.secret_key_shares[v])
        for u in sent:  # u added +PRG(s_uv) if v > u, else -PRG(s_uv)
            mask = pair_mask(agree(sk_v, public_keys[u]), size, m)
            if v > u:
                total -= mask
            else:
                total += mask
    if m < 64:
        total &= np.uint64((1 << m) - 1)
    cost.upload_bits = [up[u] for u in range(n)]
    cost.download_bits = [down[u] for u in range(n)]
    return Outcome(total=from_ring(total, m), included=sent, masked=masked,
                   threshold=threshold, modulus_bits=m, cost=cost, view=view)


def _need(count: int, threshold: int, stage: str) -> None:
    if count < threshold:
        raise SecureAggregationError(
            f"secure aggregation failed: only {count} clients {stage}, fewer than the "
            f"threshold t={threshold} (--secagg_threshold); the sum cannot be decoded")


def float_upload_bits(size: int) -> int:
    """Bits of the plain float32 update the protocol replaces."""
    return FLOAT_BITS * size

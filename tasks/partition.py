"""Partitions of pooled examples into clients: the data axis of a study.

Every partition is a pure function of the pooled labels (or their count), the
number of clients and a seed, and returns one array of example indices per
client; the clients are disjoint and cover every example they are given.

- `iid`: a seeded permutation cut into N clients of equal size (the sizes
  differ by at most one).
- `shards`: McMahan et al. 2017's pathological non-IID split: examples sorted
  by label (ties in a seeded order), cut into N x S shards of equal size, S
  random shards per client, so a client sees at most about S labels.
- `dirichlet`: label skew (Hsu et al. 2019): for every label, the shares of
  the N clients are drawn from Dirichlet(alpha, ..., alpha) and the label's
  examples are dealt out in those shares; small alpha gives each client few
  labels, large alpha approaches IID.
- `quantity_skew`: client sizes proportional to log-normal(0, sigma) draws
  (every client keeps at least one example); labels as IID.

`like` partitions a test pool so that each client's test labels follow its
training labels (for federated evaluation); the pooled test set itself is
unchanged, so centralised evaluation is the same under every partition.
"""

from __future__ import annotations

import numpy as np

from experiments.core.errors import UsageError

PARTITIONS = ("natural", "iid", "shards", "dirichlet", "quantity_skew")


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0x9A27, stream])


def _check_clients(clients: int, examples: int) -> None:
    if clients < 1:
        raise UsageError(f"--partition_clients={clients} must be a positive integer")
    if clients > examples:
        raise UsageError(f"--partition_clients={clients} exceeds the {examples} pooled "
                         f"training examples: every client needs at least one")


def iid(examples: int, clients: int, seed: int) -> list[np.ndarray]:
    """Equal-size clients of a seeded permutation."""
    _check_clients(clients, examples)
    return [np.sort(part) for part in
            np.array_split(_rng(seed, 1).permutation(examples), clients)]


def shards(labels: np.ndarray, clients: int, per_client: int, seed: int
           ) -> list[np.ndarray]:
    """McMahan et al.'s pathological split: `per_client` label-sorted shards each."""
    labels = np.asarray(labels)
    count = clients * per_client
    if per_client < 1:
        raise UsageError(f"--shards_per_client={per_client} must be a positive integer")
    if count > labels.size:
        raise UsageError(f"{clients} clients x {per_client} shards = {count} shards, more "
                         f"than the {labels.size} pooled training examples; use fewer")
    rng = _rng(seed, 2)
    ties = rng.permutation(labels.size)
    order = ties[np.argsort(labels[ties], kind="stable")]
    pieces = np.array_split(order, count)
    dealt = rng.permutation(count).reshape(clients, per_client)
    return [np.sort(np.concatenate([pieces[s] for s in row])) for row in dealt]


def dirichlet(labels: np.ndarray, clients: int, alpha: float, seed: int
              ) -> list[np.ndarray]:
    """Label skew: each label's examples shared out in Dirichlet(alpha) proportions.

    A client left with no example gets one from the largest client, so every
    client can train (the label skew is otherwise untouched).
    """
    labels = np.asarray(labels)
    if not alpha > 0:
        raise UsageError(f"--dirichlet_alpha={alpha} must be > 0 (small: few labels per "
                         f"client; large: close to IID)")
    _check_clients(clients, labels.size)
    rng = _rng(seed, 3)
    parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet(np.full(clients, float(alpha)))
        cuts = np.floor(np.cumsum(shares)[:-1] * members.size + 1e-9).astype(int)
        for client, piece in enumerate(np.split(members, cuts)):
            parts[client].append(piece)
    out = [np.concatenate(p) if p else np.array([], int) for p in parts]
    for client in range(clients):
        if out[client].size == 0:
            donor = int(np.argmax([p.size for p in out]))
            out[client], out[donor] = out[donor][:1], out[donor][1:]
    return [np.sort(p) for p in out]


def quantity_skew(examples: int, clients: int, sigma: float, seed: int
                  ) -> list[np.ndarray]:
    """Client sizes proportional to log-normal(0, sigma) draws; each client >= 1 example."""
    _check_clients(clients, examples)
    if not sigma >= 0:
        raise UsageError(f"--quantity_sigma={sigma} must be >= 0 (0: equal sizes)")
    rng = _rng(seed, 4)
    weights = rng.lognormal(0.0, sigma, size=clients)
    spare = examples - clients
    sizes = 1 + np.floor(weights / weights.sum() * spare).astype(int)
    sizes[np.argsort(-weights)[:examples - sizes.sum()]] += 1  # the remainder
    order = rng.permutation(examples)
    return [np.sort(part) for part in np.split(order, np.cumsum(sizes)[:-1])]


def like(train_parts: list[np.ndarray], train_labels: np.ndarray,
         test_labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """The test pool dealt out so each client's test labels follow its training labels.

    Each label's test examples go to the clients in proportion to how many
    training examples of that label each holds (largest remainders first).
    """
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    rng = _rng(seed, 5)
    parts: list[list[np.ndarray]] = [[] for _ in train_parts]
    held = np.array([[np.sum(train_labels[p] == label) for p in train_parts]
                     for label in np.unique(test_labels)], dtype=float)
    for row, label in zip(held, np.unique(test_labels), strict=True):
        members = rng.permutation(np.flatnonzero(test_labels == label))
        if row.sum() == 0:
            row = np.ones_like(row)  # a label no client trains on: spread evenly
        exact = row / row.sum() * members.size
        counts = np.floor(exact).astype(int)
        counts[np.argsort(counts - exact)[:members.size - counts.sum()]] += 1
        for client, piece in enumerate(np.split(members, np.cumsum(counts)[:-1])):
            parts[client].append(piece)
    return [np.sort(np.concatenate(p)) for p in parts]


def summary(parts: list[np.ndarray], labels: np.ndarray | None) -> dict:
    """What hparams.json records of a partition: clients, sizes, labels per client."""
    sizes = np.array([p.size for p in parts])
    out = {"clients": int(sizes.size), "examples": int(sizes.sum()),
           "size_min": int(sizes.min()), "size_mean": float(sizes.mean()),
           "size_max": int(sizes.max())}
    if labels is not None:
        distinct = [np.unique(np.asarray(labels)[p]).size for p in parts]
        out["labels_per_client_mean"] = float(np.mean(distinct))
        out["labels_per_client_max"] = int(np.max(distinct))
    return out

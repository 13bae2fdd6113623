"""Memorisation canaries and their exposure (Carlini et al. 2019, "The Secret Sharer").

A canary is a secret planted in one client's training data; after training,
its *exposure* says how much more likely the model finds the secret than the
alternatives: with the canary ranked among candidate secrets by the model's
loss (lowest first, the canary itself included),

    exposure = log2 |candidates| - log2 rank,

so 0 when the canary is the least likely candidate and log2 |candidates|
when the model prefers it to every other.

`--canaries=N` picks 2N distinct training clients from `--seed`; the first N
get `--canary_repeats` copies of their canary at seeded positions among their
own examples (so a `--max_elements_per_client` cap keeps a fair share), the
other N are controls: built the same way, never inserted, their exposure is
what an un-memorised secret gets (about 1 bit below the maximum by chance).

- Image tasks: the secret is one of the client's own images with a random
  wrong label; the candidates are that image with each of the C labels, so
  exposure is at most log2 C (5.95 bits for EMNIST-62) and reaching it means
  the model prefers the planted label even to the true one.
- Text tasks (a task with `encode_text`): the secret is the sentence
  "my secret number is" followed by `SECRET_DIGITS` random digits, written as
  separate tokens; its loss is the log-perplexity of the whole sentence and the
  candidates are `candidates` other random digit strings after the same prefix
  (exposure at most log2(candidates + 1)), as in Carlini et al.'s estimate by
  sampling. Their estimate by distribution modelling is also given
  (`exposure_fit`): a skew-normal fitted to the candidates' losses,
  exposure = -log2 P(loss <= canary's), capped at log2 of the 10^6 secrets,
  which still ranks canaries memorised beyond the sampled candidates' reach.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from scipy import stats

from experiments.core.errors import UsageError
from experiments.privacy.settings import CanarySettings
from tasks.client_arrays import ArrayClientData
from tasks.task import Task

_STREAM = 0xCA7
_POSITIONS = 0xCA8
_CANDIDATES = 0xCA9
TEXT_PREFIX = "my secret number is"
SECRET_DIGITS = 6
DEFAULT_CANDIDATES = 1000


@dataclasses.dataclass(frozen=True)
class Canary:
    """One image canary: an image of a training client and the secret label it gets."""

    client_index: int
    client_id: str
    example: int  # index of the image within the client's (original) data
    true_label: int
    label: int  # the secret: a random label other than the true one
    inserted: bool


@dataclasses.dataclass(frozen=True)
class TextCanary:
    """One text canary: a random digit string a training client writes after TEXT_PREFIX."""

    client_index: int
    client_id: str
    secret: str  # SECRET_DIGITS digits separated by spaces, e.g. "3 1 4 1 5 9"
    inserted: bool

    @property
    def text(self) -> str:
        return sentence(self.secret)


def sentence(secret: str) -> str:
    """The sentence a text canary (or a candidate) writes."""
    return f"{TEXT_PREFIX} {secret}"


def exposure(canary_loss: float, candidate_losses: np.ndarray) -> float:
    """log2 |R| - log2 rank of the canary among R = candidates + canary (lower loss first).

    Ties are resolved in the canary's favour (rank = 1 + candidates strictly lower).
    """
    losses = np.asarray(candidate_losses, dtype=np.float64).ravel()
    rank = 1 + int(np.sum(losses < canary_loss))
    return math.log2(losses.size + 1) - math.log2(rank)


def fitted_exposure(canary_loss: float, candidate_losses: np.ndarray, space: float) -> float:
    """-log2 of the fitted skew-normal's probability of a loss at most the canary's,
    capped at log2 `space` (Carlini et al. 2019, exposure by distribution modelling)."""

    params = stats.skewnorm.fit(np.asarray(candidate_losses, dtype=np.float64))
    bits = -float(stats.skewnorm.logcdf(canary_loss, *params)) / math.log(2)
    return min(max(bits, 0.0), math.log2(space))


def _clients(data: ArrayClientData, count: int, rng: np.random.Generator) -> np.ndarray:
    """2 * count distinct seeded client indices (inserted first, then controls)."""
    if 2 * count > len(data.client_ids):
        raise UsageError(f"--canaries={count} needs {2 * count} training clients (half are "
                         f"controls); the task has {len(data.client_ids)}")
    return rng.choice(len(data.client_ids), size=2 * count, replace=False)


def plan(data: ArrayClientData, num_classes: int, count: int, seed: int
         ) -> list[Canary]:
    """`count` image canaries to insert and `count` controls, in distinct seeded clients."""
    rng = np.random.default_rng([seed, _STREAM])
    ids = data.client_ids
    canaries = []
    for n, index in enumerate(_clients(data, count, rng)):
        _, y = data.arrays(ids[index])
        example = int(rng.integers(len(y)))
        true = int(y[example])
        label = int(rng.choice([c for c in range(num_classes) if c != true]))
        canaries.append(Canary(int(index), ids[index], example, true, label, n < count))
    return canaries


def _digits(numbers: np.ndarray) -> list[str]:
    """Numbers below 10**SECRET_DIGITS as space-separated zero-padded digit strings."""
    return [" ".join(f"{int(n):0{SECRET_DIGITS}d}") for n in numbers]


def plan_text(data: ArrayClientData, count: int, seed: int) -> list[TextCanary]:
    """`count` text canaries to insert and `count` controls, distinct secrets and clients."""
    rng = np.random.default_rng([seed, _STREAM])
    clients = _clients(data, count, rng)
    secrets = _digits(rng.choice(10 ** SECRET_DIGITS, size=len(clients), replace=False))
    return [TextCanary(int(index), data.client_ids[index], secret, n < count)
            for n, (index, secret) in enumerate(zip(clients, secrets, strict=True))]


def check_text_encoding(encode_text: Callable) -> None:
    """Refuses a vocabulary in which two digits encode alike (e.g. both out of vocabulary)."""
    x, _ = encode_text([sentence(str(d)) for d in range(10)])
    if len({row.tobytes() for row in np.asarray(x)}) < 10:
        raise UsageError("text canaries need the ten digits 0-9 in the vocabulary; raise "
                         "--vocab_size (or use a task whose vocabulary holds them)")


def _insert_rows(data: ArrayClientData, extra: dict[str, tuple[np.ndarray, np.ndarray]],
                 seed: int) -> ArrayClientData:
    """The client data with each client's `extra` rows placed at seeded positions."""
    rng = np.random.default_rng([seed, _POSITIONS])
    xs, ys, sizes = [], [], []
    for client in data.client_ids:
        x, y = data.arrays(client)
        if client in extra:
            ex, ey = extra[client]
            total = len(y) + len(ey)
            at = np.zeros(total, dtype=bool)
            at[rng.choice(total, size=len(ey), replace=False)] = True
            nx = np.empty((total, *x.shape[1:]), dtype=x.dtype)
            ny = np.empty((total, *y.shape[1:]), dtype=y.dtype)
            nx[at], ny[at], nx[~at], ny[~at] = ex, ey, x, y
            x, y = nx, ny
        xs.append(x)
        ys.append(y)
        sizes.append(len(y))
    return ArrayClientData(data.client_ids, np.concatenate(xs), np.concatenate(ys), sizes)


def with_canaries(data: ArrayClientData, canaries: list[Canary], repeats: int,
                  seed: int = 0) -> ArrayClientData:
    """The client data with `repeats` mislabeled copies of each inserted image canary in
    its client, at seeded positions (other clients, and the controls, unchanged)."""
    extra = {}
    for c in canaries:
        if c.inserted:
            x, y = data.arrays(c.client_id)
            extra[c.client_id] = (np.repeat(x[c.example:c.example + 1], repeats, axis=0),
                                  np.full(repeats, c.label, dtype=y.dtype))
    return _insert_rows(data, extra, seed)


def with_text_canaries(data: ArrayClientData, canaries: list[TextCanary], repeats: int,
                       encode_text: Callable, seed: int = 0) -> ArrayClientData:
    """The client data with `repeats` copies of each inserted text canary's sentence in its
    client, at seeded positions."""
    extra = {}
    for c in canaries:
        if c.inserted:
            x, y = encode_text([c.text])
            extra[c.client_id] = (np.repeat(x, repeats, axis=0), np.repeat(y, repeats, axis=0))
    return _insert_rows(data, extra, seed)


def num_classes(task: Task, seed: int) -> int:
    """Classes of the task's model (its output width)."""
    return int(task.build_model(seed).output_shape[-1])


def canaries_of(task: Task, settings: CanarySettings, seed: int
                ) -> list[Canary] | list[TextCanary]:
    """The canaries (inserted and controls) the settings plant; [] without --canaries."""
    if settings.canaries <= 0:
        return []
    if task.encode_text is not None:
        check_text_encoding(task.encode_text)
        return plan_text(task.train_data, settings.canaries, seed)
    return plan(task.train_data, num_classes(task, seed), settings.canaries, seed)


def insert(task: Task, settings: CanarySettings, seed: int) -> Task:
    """The task with the settings' canaries planted in its training data."""
    planted = canaries_of(task, settings, seed)
    if not planted:
        return task
    if task.encode_text is not None:
        data = with_text_canaries(task.train_data, planted, settings.canary_repeats,
                                  task.encode_text, seed)
    else:
        data = with_canaries(task.train_data, planted, settings.canary_repeats, seed)
    return dataclasses.replace(task, train_data=data)


def _losses(logits: np.ndarray) -> np.ndarray:
    """Cross-entropy of every label: -log softmax (over the last axis)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return np.log(np.exp(shifted).sum(axis=-1, keepdims=True)) - shifted


def exposures(predict, data: ArrayClientData, canaries: list[Canary]) -> list[dict]:
    """Each image canary's exposure under `predict` (images -> logits), with its details.

    `data` is the original (canary-free) client data the canaries were planned on.
    """
    images = np.stack([data.arrays(c.client_id)[0][c.example] for c in canaries])
    losses = _losses(np.asarray(predict(images), dtype=np.float64))
    records = []
    for c, row in zip(canaries, losses, strict=True):
        others = np.delete(row, c.label)
        records.append({**dataclasses.asdict(c), "loss": float(row[c.label]),
                        "true_label_loss": float(row[c.true_label]),
                        "rank": 1 + int(np.sum(others < row[c.label])),
                        "exposure": exposure(row[c.label], others)})
    return records


def sequence_losses(predict, x: np.ndarray, y: np.ndarray, pad: int = 0) -> np.ndarray:
    """Log-perplexity (summed cross-entropy over non-padding targets) of each row."""
    losses = _losses(np.asarray(predict(x), dtype=np.float64))
    picked = np.take_along_axis(losses, y[..., None].astype(np.int64), axis=-1)[..., 0]
    return np.where(y != pad, picked, 0.0).sum(axis=-1)


def candidate_secrets(canary: TextCanary, count: int, seed: int) -> list[str]:
    """`count` random digit strings other than the canary's secret (seeded per canary)."""
    rng = np.random.default_rng([seed, _CANDIDATES, canary.client_index])
    secret = int(canary.secret.replace(" ", ""))
    numbers = rng.choice(10 ** SECRET_DIGITS - 1, size=count, replace=False)
    return _digits(numbers + (numbers >= secret))


def text_exposures(predict, encode_text: Callable, canaries: list[TextCanary],
                   candidates: int = DEFAULT_CANDIDATES, seed: int = 0,
                   pad: int = 0) -> list[dict]:
    """Each text canary's exposure among `candidates` random secrets under `predict`."""
    records = []
    for c in canaries:
        texts = [c.text] + [sentence(s) for s in candidate_secrets(c, candidates, seed)]
        x, y = (np.asarray(a) for a in encode_text(texts))
        width = int(np.flatnonzero((y != pad).any(axis=0)).max()) + 1  # causal: cut padding
        losses = sequence_losses(predict, x[:, :width], y[:, :width], pad)
        records.append({**dataclasses.asdict(c), "loss": float(losses[0]),
                        "rank": 1 + int(np.sum(losses[1:] < losses[0])),
                        "exposure": exposure(losses[0], losses[1:]),
                        "exposure_fit": fitted_exposure(losses[0], losses[1:],
                                                        10.0 ** SECRET_DIGITS)})
    return records


def measure(task: Task, settings: CanarySettings, seed: int, predict,
            candidates: int = DEFAULT_CANDIDATES) -> tuple[list[dict], float]:
    """Every canary's exposure under `predict`, and the largest exposure possible."""
    planted = canaries_of(task, settings, seed)
    if task.encode_text is not None:
        pad = getattr(task.scoring, "pad_id", 0)
        return (text_exposures(predict, task.encode_text, planted, candidates, seed, pad),
                math.log2(candidates + 1))
    return (exposures(predict, task.train_data, planted), math.log2(num_classes(task, seed)))

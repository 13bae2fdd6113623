"""A synthetic population in TFF's exact StackOverflow layout, at the real data set's scale.

    python -m tasks.stackoverflow_synthetic --output_dir=DIR [--clients=342477]

The real `stackoverflow.sqlite` (342,477 training users, 135,818,730 sentences;
TFF's documentation) cannot be downloaded offline. This writes a file with the
same tables, split names and tf.train.Example features, plus the vocabulary
files, so the loading and training paths are exactly the real ones, and a
`synthetic` table holding the generator's parameters, so every run on it is
reported as synthetic (tasks.stackoverflow.data_name). Its text means nothing.

Parameters (defaults; each is a flag):
- users: 342,477 in `train`; 60% of them (204,088 / 342,477) also in `test`;
- sentences per training user: 100 + X, X log-normal with log-std 1.0 scaled to
  a mean of 296.6, so the mean is 396.6 = 135,818,730 / 342,477 and nobody has
  fewer than 100 (TFF dropped users below 100). The log-std is our assumption:
  the published statistics give the mean, not the spread;
- test sentences per user: 1 + log-normal (log-std 1.0) of mean 80.3, the test
  split's 16,586,035 / 204,088 = 81.3;
- words: 10,000 ("w0".."w9999") with Zipf(1.1) frequencies, 1 + Poisson(19)
  words per sentence; tags: 500 ("t0".."t499"), Zipf(1.1), one to three per post.
"""

from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
from absl import flags

from experiments.core import binary, stops
from tasks import sql_client_data, stackoverflow, stackoverflow_vocab

TRAIN_USERS = 342_477
TRAIN_MEAN = 135_818_730 / TRAIN_USERS  # 396.6
MIN_SENTENCES = 100
TEST_SHARE = 204_088 / TRAIN_USERS
TEST_MEAN = 16_586_035 / 204_088  # 81.3
_BATCH = 50_000  # rows per INSERT batch

_FLAGS = flags.FLAGS


def _define_flags() -> None:
    """The generator's flags, defined only when run as a program: importing this
    module (tests, the bench) must not add flags that clash with the trainer's."""
    flags.DEFINE_string("output_dir", "", "Folder for stackoverflow.sqlite and its count files.")
    flags.DEFINE_integer("clients", TRAIN_USERS, "Training users.", lower_bound=1)
    flags.DEFINE_float("mean_sentences", TRAIN_MEAN, "Mean sentences per training user "
                       "(at least 100 each).", lower_bound=MIN_SENTENCES)
    flags.DEFINE_float("spread", 1.0, "Log-std of the sentences above 100.", lower_bound=0)
    flags.DEFINE_integer("vocab", 10_000, "Distinct words.", lower_bound=10)
    flags.DEFINE_integer("tags", 500, "Distinct tags.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Generator seed.")

def sizes(users: int, mean: float, minimum: int, spread: float,
          rng: np.random.Generator) -> np.ndarray:
    """Sentences per user: minimum + a log-normal (log-std `spread`) of mean - minimum."""
    excess = mean - minimum
    if excess <= 0:
        return np.full(users, minimum, np.int64)
    mu = np.log(excess) - spread ** 2 / 2  # E[lognormal(mu, s)] = exp(mu + s^2 / 2)
    return minimum + np.rint(rng.lognormal(mu, spread, users)).astype(np.int64)


def _zipf_cdf(n: int, exponent: float = 1.1) -> np.ndarray:
    """Cumulative Zipf(exponent) probabilities of ranks 1..n (draw by searchsorted)."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return np.cumsum(weights / weights.sum())


def _draw(cdf: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(count)), len(cdf) - 1)


def parameters(clients: int = TRAIN_USERS, mean_sentences: float = TRAIN_MEAN,
               spread: float = 1.0, vocab: int = 10_000, tags: int = 500,
               seed: int = 0) -> dict:
    """The generator's settings, as stored in the file's `synthetic` table."""
    return {"clients": clients, "mean_sentences": mean_sentences,
            "min_sentences": MIN_SENTENCES, "spread": spread,
            "test_share": TEST_SHARE, "test_mean_sentences": TEST_MEAN,
            "vocab": vocab, "tags": tags, "words_per_sentence": "1+Poisson(19)",
            "zipf": 1.1, "seed": seed}


def write(folder: str, settings: dict) -> str:
    """Writes DIR/stackoverflow.sqlite (atomically) and the two count files."""
    rng = np.random.default_rng(settings["seed"])
    words = [f"w{i}" for i in range(settings["vocab"])]
    tags = [f"t{i}" for i in range(settings["tags"])]
    word_p, tag_p = _zipf_cdf(len(words)), _zipf_cdf(len(tags))
    users = settings["clients"]
    train = sizes(users, settings["mean_sentences"], MIN_SENTENCES, settings["spread"], rng)
    in_test = rng.random(users) < TEST_SHARE
    test = sizes(users, TEST_MEAN, 1, settings["spread"], rng)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, stackoverflow_vocab.DATA_FILE)
    temporary = f"{path}.{os.getpid()}.tmp"
    with sqlite3.connect(temporary) as db:
        sql_client_data.create_tables(db)
        db.execute("CREATE TABLE synthetic (parameters TEXT NOT NULL)")
        db.execute("INSERT INTO synthetic VALUES (?)", (json.dumps(settings),))
        for split, counts, members in (("train", train, np.ones(users, bool)),
                                       ("test", test, in_test)):
            _write_split(db, split, counts, members, words, word_p, tags, tag_p, rng)
    os.replace(temporary, path)
    # Vocabulary files in decreasing frequency (the generator's own ranks as counts).
    counts_text = "".join(f"{w}\t{len(words) - i}\n" for i, w in enumerate(words))
    with open(os.path.join(folder, stackoverflow_vocab.WORD_COUNT_FILE), "w") as f:
        f.write(counts_text)
    with open(os.path.join(folder, stackoverflow_vocab.TAG_COUNT_FILE), "w") as f:
        json.dump({t: len(tags) - i for i, t in enumerate(tags)}, f)
    return path


def _write_split(db: sqlite3.Connection, split: str, counts: np.ndarray,
                 members: np.ndarray, words: list[str], word_p: np.ndarray,
                 tags: list[str], tag_p: np.ndarray, rng: np.random.Generator) -> None:
    rows, metadata = [], []
    for user in np.flatnonzero(members):
        client_id, n = f"{user + 1:08d}", int(counts[user])
        lengths = 1 + rng.poisson(19, n)
        tokens = _draw(word_p, int(lengths.sum()), rng)
        ends = np.cumsum(lengths)
        tag_counts = 1 + rng.integers(0, 3, n)
        drawn_tags = _draw(tag_p, int(tag_counts.sum()), rng)
        tag_ends = np.cumsum(tag_counts)
        scores = rng.integers(-2, 10, n)
        for i in range(n):
            sentence = " ".join([words[t] for t in tokens[ends[i] - lengths[i]:ends[i]]])
            chosen = drawn_tags[tag_ends[i] - tag_counts[i]:tag_ends[i]]
            rows.append((split, client_id, stackoverflow.example_proto(
                sentence, "synthetic title", "|".join([tags[t] for t in chosen]),
                "question" if i == 0 else "answer", int(scores[i]),
                "2017-06-01 10:00:00.000 UTC")))
        metadata.append((client_id, split, n))
        if len(rows) >= _BATCH:
            db.executemany("INSERT INTO examples VALUES (?, ?, ?)", rows)
            rows = []
    db.executemany("INSERT INTO examples VALUES (?, ?, ?)", rows)
    db.executemany("INSERT INTO client_metadata VALUES (?, ?, ?)", metadata)


def _main() -> None:
    if not _FLAGS.output_dir:
        binary.usage_exit("stackoverflow_synthetic", "--output_dir is required")
    path = write(_FLAGS.output_dir, parameters(
        _FLAGS.clients, _FLAGS.mean_sentences, _FLAGS.spread, _FLAGS.vocab, _FLAGS.tags,
        _FLAGS.seed))
    print(f"synthetic StackOverflow layout: {path} ({_FLAGS.clients:,} training users)")


if __name__ == "__main__":
    _define_flags()
    binary.run("stackoverflow_synthetic", _main, interrupted=stops.NOTHING_WRITTEN)

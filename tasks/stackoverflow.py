"""StackOverflow data shared by the next-word and tag tasks: file, parsing, tokens.

The examples come from TFF's `stackoverflow.sqlite` in the cache dir (the
file `tff.simulation.datasets.stackoverflow.load_data(cache_dir=--data_dir)`
reads; TFF downloads it when online), read once per split through
`sql_client_data`; the vocabularies come from our own reader
(`tasks.stackoverflow_vocab`). Token ids follow TFF's baseline preprocessing
(`tff.simulation.baselines.stackoverflow`) exactly:

- next word: words are the `tokens` split on single spaces, cut to
  `sequence_length`; word i of the vocabulary has id i + 1, padding is 0,
  out-of-vocabulary V + 1, begin / end of sentence V + 2 / V + 3; a sentence is
  BOS, its words, EOS (only when shorter than `sequence_length`), padded to
  `sequence_length + 1`; inputs are all but the last id, targets all but the
  first.
- tags: the words of `tokens` and `title` (whitespace split) as a normalised
  bag of in-vocabulary words, and a multi-hot vector over the tag vocabulary.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import sqlite3

import numpy as np
import tensorflow as tf

from experiments.core.errors import UsageError
from tasks import client_store, data_files, sql_client_data, stackoverflow_vocab
from tasks.client_arrays import ArrayClientData
from tasks.sql_client_data import Preparer

DATA_FILE = stackoverflow_vocab.DATA_FILE
SPLITS = ("train", "heldout", "test")
DEFAULT_SEQUENCE_LENGTH = 20

_FEATURES = {
    "creation_date": tf.io.FixedLenFeature(shape=(), dtype=tf.string),
    "score": tf.io.FixedLenFeature(shape=(), dtype=tf.int64),
    "tags": tf.io.FixedLenFeature(shape=(), dtype=tf.string),
    "title": tf.io.FixedLenFeature(shape=(), dtype=tf.string),
    "tokens": tf.io.FixedLenFeature(shape=(), dtype=tf.string),
    "type": tf.io.FixedLenFeature(shape=(), dtype=tf.string),
}


def parse(serialized: tf.Tensor) -> collections.OrderedDict:
    """One tf.train.Example of TFF's StackOverflow layout, as TFF's loader parses it."""
    features = tf.io.parse_single_example(serialized, _FEATURES)
    return collections.OrderedDict((key, features[key]) for key in _FEATURES)


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    """Ids TFF's next-word preprocessing adds around a vocabulary of `vocab_size` words."""

    vocab_size: int
    pad: int = 0

    @property
    def oov(self) -> int:
        return self.vocab_size + 1

    @property
    def bos(self) -> int:
        return self.vocab_size + 2

    @property
    def eos(self) -> int:
        return self.vocab_size + 3

    @property
    def total(self) -> int:
        """Output classes of the model: words, padding, OOV, BOS, EOS."""
        return self.vocab_size + 4


def word_ids(sentences, vocab: list[str], sequence_length: int) -> np.ndarray:
    """Sentences (str or bytes) to [n, sequence_length + 1] ids, as TFF's `to_ids`
    followed by its `padded_batch`."""
    special = SpecialTokens(len(vocab))
    index = {word: i + 1 for i, word in enumerate(vocab)}
    out = np.zeros((len(sentences), sequence_length + 1), dtype=np.int32)
    for row, sentence in enumerate(sentences):
        if isinstance(sentence, bytes):
            sentence = sentence.decode("utf-8", "replace")
        words = sentence.split(" ")[:sequence_length]
        ids = [special.bos] + [index.get(w, special.oov) for w in words]
        if len(words) < sequence_length:
            ids.append(special.eos)
        out[row, :len(ids)] = ids
    return out


def bag_of_word_ids(texts, vocab: list[str]) -> np.ndarray:
    """Texts to the in-vocabulary word ids (0..V-1) of each, padded with -1.

    The model turns them into TFF's normalised bag of words (counts over
    in-vocabulary words divided by their number); storing ids instead of
    10,000 floats per example keeps a split small in memory.
    """
    index = {word: i for i, word in enumerate(vocab)}
    rows = []
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        rows.append([index[w] for w in text.split() if w in index])
    out = np.full((len(rows), max([len(r) for r in rows] + [1])), -1, dtype=np.int32)
    for i, ids in enumerate(rows):
        out[i, :len(ids)] = ids
    return out


def multi_hot_tags(tag_strings, tags: list[str]) -> np.ndarray:
    """'|'-joined tag strings to [n, len(tags)] multi-hot float32 (unknown tags dropped)."""
    index = {tag: i for i, tag in enumerate(tags)}
    out = np.zeros((len(tag_strings), len(tags)), dtype=np.float32)
    for row, joined in enumerate(tag_strings):
        if isinstance(joined, bytes):
            joined = joined.decode("utf-8", "replace")
        for tag in joined.split("|"):
            if tag in index:
                out[row, index[tag]] = 1.0
    return out


def example_proto(tokens: str, title: str, tags: str, kind: str, score: int, date: str
                  ) -> bytes:
    """One serialized tf.train.Example of the StackOverflow layout (what `parse` reads)."""
    def text(value: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))

    features = {
        "tokens": text(tokens), "title": text(title), "tags": text(tags),
        "type": text(kind), "creation_date": text(date),
        "score": tf.train.Feature(int64_list=tf.train.Int64List(value=[score])),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


FULL_TRAIN_USERS = 342_477  # TFF's StackOverflow


def data_name(path: str) -> str:
    """The data set's name from the file's own content: a synthetic population (its
    `synthetic` table, tasks.stackoverflow_synthetic), TFF's StackOverflow (342,477
    training users), or other data in its layout, never called StackOverflow."""
    users = sql_client_data.client_count(path, "train")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        synthetic = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND "
                               "name = 'synthetic'").fetchone()
    if synthetic:
        return f"synthetic StackOverflow layout ({users:,} users; not real text)"
    if users == FULL_TRAIN_USERS:
        return "StackOverflow"
    return f"StackOverflow-layout data ({users:,} users; not StackOverflow itself)"


def data_path(data_dir: str | None) -> str:
    """Path of `stackoverflow.sqlite` (TFF downloads it when absent and online)."""
    return data_files.resolve(data_dir, DATA_FILE)


def vocabulary_hash(words: list[str]) -> str:
    """A short hash of a vocabulary (part of a client store's key)."""
    return hashlib.sha256("\n".join(words).encode()).hexdigest()[:16]


def preparation(name: str, prepare: Preparer, parameters: dict,
                code: tuple = (), x_pad: int | None = None) -> client_store.Preparation:
    """A text task's client-store preparation of StackOverflow records."""
    return client_store.Preparation(name, parse, prepare, parameters, code, x_pad)


def load_splits(path: str, eval_split: str, preparation: client_store.Preparation,
                data_store: str) -> tuple[ArrayClientData, ArrayClientData]:
    """(train, eval) client data; eval is `test` or `heldout` (validation)."""
    if eval_split not in SPLITS[1:]:
        raise UsageError(f"--eval_split={eval_split} is not a StackOverflow split; valid: "
                         f"{', '.join(SPLITS[1:])}")
    train = client_store.load(path, "train", preparation, data_store)
    evaluation = client_store.load(path, eval_split, preparation, data_store)
    if train is None or evaluation is None:
        raise UsageError(f"{path} has no clients in its train / {eval_split} splits; it is "
                         f"not a StackOverflow file")
    return train, evaluation

"""Shakespeare next-character prediction (McMahan et al. 2017; TFF's baseline task).

Clients are speaking roles of TFF's `shakespeare.sqlite` (715 roles, LEAF's
split). As TFF's baseline preprocessing does, each snippet becomes BOS, its
characters' ids (TFF's 86-character vocabulary, id = index + 1, any other
byte the out-of-vocabulary id), EOS, padded with 0 to a multiple of
`sequence_length + 1` and cut into rows of that length; inputs are a row
but its last id, targets a row but its first. Rows are prepared once at load
(one snippet -> several examples), so `--max_elements_per_client` caps
sequences, and shuffling mixes sequences rather than whole snippets.

Model: TFF's `create_recurrent_model` (embedding 8, two LSTMs of 256, dense
logits over the 90 ids). The embedding does not mask padding: padding only
trails a row and the LSTMs are causal, so logits at real positions equal
those of TFF's `mask_zero=True`. `accuracy` leaves out padding, OOV, BOS
and EOS targets; `accuracy_with_special` leaves out padding only (TFF's
`accuracy`). The naive baseline predicts the most frequent character.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from experiments.core.errors import UsageError
from tasks import client_store, data_files
from tasks.scoring import SequenceScoring
from tasks.settings import TaskConfig
from tasks.task import Task

DATA_FILE = "shakespeare.sqlite"
DEFAULT_SEQUENCE_LENGTH = 80
# TFF's CHAR_VOCAB (tff.simulation.baselines.shakespeare), in its order.
CHAR_VOCAB = list(
    "dhlptx@DHLPTX"
    " $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\naeimquyAEIMQUY]!%)-159\r")
PAD, OOV, BOS, EOS = 0, len(CHAR_VOCAB) + 1, len(CHAR_VOCAB) + 2, len(CHAR_VOCAB) + 3
NUM_IDS = len(CHAR_VOCAB) + 4

_FEATURES = {"snippets": tf.io.FixedLenFeature(shape=(), dtype=tf.string)}


def _parse(serialized: tf.Tensor) -> collections.OrderedDict:
    """One tf.train.Example of TFF's Shakespeare layout, as TFF's loader parses it."""
    return collections.OrderedDict(
        snippets=tf.io.parse_single_example(serialized, _FEATURES)["snippets"])


def char_rows(snippets, sequence_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Snippets (bytes) to [n, sequence_length + 1] id rows and each row's snippet index."""
    table = np.full(256, OOV, dtype=np.int32)
    for i, char in enumerate(CHAR_VOCAB):
        table[ord(char)] = i + 1
    width = sequence_length + 1
    rows, source = [], []
    for index, snippet in enumerate(snippets):
        if isinstance(snippet, str):
            snippet = snippet.encode("utf-8")
        ids = np.concatenate([[BOS], table[np.frombuffer(snippet, dtype=np.uint8)], [EOS]])
        padded = np.zeros(-(-len(ids) // width) * width, dtype=np.int32)
        padded[:len(ids)] = ids
        rows.append(padded.reshape(-1, width))
        source.extend([index] * (len(padded) // width))
    if not rows:
        return np.zeros((0, width), np.int32), np.zeros(0, np.int64)
    return np.concatenate(rows), np.asarray(source, dtype=np.int64)


def recurrent(seed: int) -> tf.keras.Model:
    """TFF's Shakespeare model: embedding 8, two LSTM(256, he_normal), dense logits."""
    def lstm(index: int) -> tf.keras.layers.LSTM:
        return tf.keras.layers.LSTM(
            256, return_sequences=True,
            kernel_initializer=tf.keras.initializers.HeNormal(seed=seed * 1000 + index),
            recurrent_initializer=tf.keras.initializers.Orthogonal(seed=seed * 1000 + 10 + index))

    return tf.keras.Sequential([
        tf.keras.layers.InputLayer(input_shape=(None,), dtype=tf.int32),
        tf.keras.layers.Embedding(NUM_IDS, 8, embeddings_initializer=(
            tf.keras.initializers.RandomUniform(-0.05, 0.05, seed=seed * 1000))),
        lstm(1),
        lstm(2),
        tf.keras.layers.Dense(NUM_IDS, kernel_initializer=tf.keras.initializers.GlorotUniform(
            seed=seed * 1000 + 3)),
    ])


MODELS: dict[str, Callable[[int], tf.keras.Model]] = {"lstm": recurrent}


def preparation(sequence_length: int) -> client_store.Preparation:
    """Snippets cut into (x, y) rows of `sequence_length` character ids."""
    def prepare(arrays: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, source = char_rows(arrays["snippets"], sequence_length)
        return np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, 1:]), source

    return client_store.Preparation("shakespeare", _parse, prepare,
                                    {"sequence_length": sequence_length}, (char_rows,))


def build_task(config: TaskConfig) -> Task:
    """Next-character prediction with the model named by --model (default `lstm`)."""
    model = config.model or "lstm"
    if model not in MODELS:
        raise UsageError(f"--model={model} is not a model of --task=shakespeare_character; "
                         f"valid: {', '.join(MODELS)}")
    sequence_length = config.sequence_length or DEFAULT_SEQUENCE_LENGTH
    path = data_files.resolve(config.data_dir, DATA_FILE)
    prepared = preparation(sequence_length)

    def encode_text(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        x, y, _ = prepared.prepare({"snippets": texts})
        return x, y

    train = client_store.load(path, "train", prepared, config.data_store)
    test = client_store.load(path, "test", prepared, config.data_store)
    if train is None or test is None:
        raise UsageError(f"{path} has no clients in its train / test splits; it is not a "
                         f"Shakespeare file")
    builder = MODELS[model]
    return Task(
        name="shakespeare_character",
        config=config,
        train_data=train,
        test_data=test,
        build_model=builder,
        scoring=SequenceScoring(PAD, (OOV, BOS, EOS)),
        model_name=model,
        data_file=path,
        encode_text=encode_text,
        description=(f"Shakespeare next-character prediction, sequence length "
                     f"{sequence_length}, {model}"),
    )

"""StackOverflow tasks: token ids against TFF's own preprocessing, vocab files, loading.

Hand-made sentences check OOV, padding, BOS and EOS; TFF's baseline
preprocessing functions are the independent reference for ids, bags of
words and tags; the fixture file in TFF's layout exercises the loading
path and the vocabulary builder; the real SE-Bioinformatics counts check
the builder's definition.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_federated.python.simulation.baselines.stackoverflow import (
    tag_prediction_preprocessing,
    word_prediction_models,
    word_prediction_preprocessing,
)

from experiments.core.errors import UsageError
from tasks import (
    registry,
    stackoverflow,
    stackoverflow_fixture,
    stackoverflow_models,
    stackoverflow_vocab,
)
from tasks.settings import TaskConfig

VOCAB = ["the", "a", "cat", "sat"]  # ids 1..4; pad 0, OOV 5, BOS 6, EOS 7


def test_hand_made_sentences_oov_padding_bos_eos():
    ids = stackoverflow.word_ids(["the cat sat", "a dog sat", "the cat sat a cat the"],
                                 VOCAB, sequence_length=4)
    np.testing.assert_array_equal(ids, [
        [6, 1, 3, 4, 7],   # BOS the cat sat EOS
        [6, 2, 5, 4, 7],   # "dog" is out of vocabulary
        [6, 1, 3, 4, 2],   # cut to 4 words: no EOS
    ])
    short = stackoverflow.word_ids(["cat"], VOCAB, sequence_length=4)
    np.testing.assert_array_equal(short, [[6, 3, 7, 0, 0]])  # padded with 0
    special = stackoverflow.SpecialTokens(len(VOCAB))
    assert (special.pad, special.oov, special.bos, special.eos, special.total) == (
        0, 5, 6, 7, 8)


@pytest.mark.parametrize("sequence_length", [3, 20])
def test_word_ids_match_tff_preprocessing(sequence_length):
    sentences = ["the cat sat", "a  dog sat .", "", "the cat sat a cat the sat a cat the "
                 "a a a a a a a a a a a a a a a a", "naïve cat"]
    to_ids = word_prediction_preprocessing.build_to_ids_fn(VOCAB, sequence_length)
    data = tf.data.Dataset.from_tensor_slices({"tokens": sentences}).map(to_ids)
    (x, y), = word_prediction_preprocessing.batch_and_split(
        data, sequence_length, batch_size=len(sentences)).as_numpy_iterator()
    ours = stackoverflow.word_ids(sentences, VOCAB, sequence_length)
    np.testing.assert_array_equal(ours[:, :-1], x)
    np.testing.assert_array_equal(ours[:, 1:], y)


def test_bag_of_words_and_tags_match_tff_preprocessing():
    texts = ["the cat sat on the mat", "dog dog", "a a cat", ""]
    titles = ["cat title", "", "sat", "the"]
    tag_strings = ["python|sql", "java", "unknown|python", ""]
    tags = ["python", "java", "sql"]
    to_ids = tag_prediction_preprocessing.build_to_ids_fn(VOCAB, tags)
    data = tf.data.Dataset.from_tensor_slices(
        {"tokens": texts, "title": titles, "tags": tag_strings}).map(to_ids)
    expected_x, expected_y = zip(*data.as_numpy_iterator(), strict=True)
    ids = stackoverflow.bag_of_word_ids(
        [f"{t} {title}" for t, title in zip(texts, titles, strict=True)], VOCAB)
    bag = stackoverflow_models.BagOfWords(len(VOCAB))(tf.constant(ids)).numpy()
    np.testing.assert_allclose(bag, np.stack(expected_x), rtol=1e-6)
    np.testing.assert_array_equal(stackoverflow.multi_hot_tags(tag_strings, tags),
                                  np.stack(expected_y))


def test_unmasked_model_matches_tff_masked_model_at_real_positions():
    outputs = stackoverflow.SpecialTokens(len(VOCAB)).total
    ours = stackoverflow_models.recurrent(outputs, seed=3, embedding_size=6, lstm_size=5)
    tff_model = word_prediction_models.create_recurrent_model(
        outputs, embedding_size=6, lstm_size=5)  # mask_zero=True
    tff_model.set_weights(ours.get_weights())
    ids = stackoverflow.word_ids(["the cat sat", "a", "cat cat cat cat"], VOCAB, 6)[:, :-1]
    real = ids != 0
    np.testing.assert_allclose(ours(ids).numpy()[real], tff_model(ids).numpy()[real],
                               rtol=1e-5, atol=1e-6)


def test_seeded_models_are_reproducible():
    first = stackoverflow_models.recurrent(10, seed=1, embedding_size=4, lstm_size=3)
    again = stackoverflow_models.recurrent(10, seed=1, embedding_size=4, lstm_size=3)
    for a, b in zip(first.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("stackoverflow"))
    stackoverflow_fixture.write(folder)
    return folder


def test_missing_vocab_files_name_the_build_command(fixture_dir):
    with pytest.raises(UsageError) as info:
        stackoverflow_vocab.read_words(fixture_dir, 10)
    message = str(info.value)
    assert "stackoverflow.word_count not found" in message and "\n" not in message
    assert f"./run.sh vocab --data_dir={fixture_dir}" in message
    with pytest.raises(UsageError, match="stackoverflow.tag_count not found"):
        stackoverflow_vocab.read_tags(fixture_dir, 10)


def test_vocab_builder_counts_users_and_refuses_to_overwrite(fixture_dir):
    words_path, tags_path = stackoverflow_vocab.write(fixture_dir)
    lines = open(words_path).read().splitlines()
    counts = {w: int(c) for w, c in (line.split("\t") for line in lines)}
    # Train clients are 0..6 (7 users; the last client is heldout only); "the"
    # appears in the sql, git and java patterns and in "rare" sentences never.
    train_topics = [stackoverflow_fixture.TOPICS[c % 4][1].split() for c in range(7)]
    assert counts["the"] == sum("the" in words for words in train_topics)
    assert counts["rare0x0"] == 1
    assert [int(c) for c in counts.values()] == sorted(counts.values(), reverse=True)
    tag_counts = json.load(open(tags_path))
    assert tag_counts["python"] == 2 and tag_counts["t0"] == 1 and "t7" not in tag_counts
    with pytest.raises(UsageError, match="exists; pass --overwrite"):
        stackoverflow_vocab.write(fixture_dir)
    assert stackoverflow_vocab.read_words(fixture_dir, 3) == [line.split("\t")[0]
                                                              for line in lines[:3]]


def test_vocab_builder_reproduces_real_counts(stackexchange_dir, tmp_path):
    os.symlink(os.path.join(stackexchange_dir, "stackoverflow.sqlite"),
               tmp_path / "stackoverflow.sqlite")
    words_path, tags_path = stackoverflow_vocab.write(str(tmp_path))

    def word_counts(path: str) -> dict[str, int]:
        return {w: int(c) for w, c in (line.split() for line in open(path))}

    assert word_counts(words_path) == word_counts(
        os.path.join(stackexchange_dir, "stackoverflow.word_count"))
    assert json.load(open(tags_path)) == json.load(
        open(os.path.join(stackexchange_dir, "stackoverflow.tag_count")))


def test_malformed_vocab_files_are_one_line_errors(tmp_path):
    (tmp_path / "stackoverflow.word_count").write_text("the\t5\nbroken line here\n")
    with pytest.raises(UsageError, match=r"word_count:2: expected 'word<TAB>count'"):
        stackoverflow_vocab.read_words(str(tmp_path), 10)
    (tmp_path / "stackoverflow.tag_count").write_text("[1, 2]")
    with pytest.raises(UsageError, match="is not a tag count file"):
        stackoverflow_vocab.read_tags(str(tmp_path), 10)


def test_tasks_load_fixture_splits(fixture_dir):
    if not os.path.exists(os.path.join(fixture_dir, "stackoverflow.word_count")):
        stackoverflow_vocab.write(fixture_dir)
    word = registry.get("stackoverflow_word", TaskConfig(data_dir=fixture_dir, vocab_size=20,
                                                          sequence_length=5))
    assert len(word.train_data.client_ids) == 7 and len(word.test_data.client_ids) == 7
    x, y = word.train_data.arrays(word.train_data.client_ids[0])
    assert x.shape[1:] == (5,) and np.all(x[:, 0] == 20 + 2)  # every row starts with BOS
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    assert word.build_model(0).output_shape[-1] == 24
    heldout = registry.get("stackoverflow_word", TaskConfig(
        data_dir=fixture_dir, eval_split="heldout", model="lstm_small"))
    assert heldout.test_data.client_ids == ["00000008"]
    tag = registry.get("stackoverflow_tag", TaskConfig(data_dir=fixture_dir, tag_vocab_size=4))
    x, y = tag.train_data.arrays("00000001")
    python = stackoverflow_vocab.read_tags(fixture_dir, 4).index("python")
    assert y.shape[1:] == (4,) and np.all(y[:, python] == 1)  # client 1 writes about python
    assert x.dtype == np.int32 and x.min() >= -1 and x.max() < 10_000
    assert tag.scoring.primary == "recall_at_5"


def test_task_errors_are_one_line(fixture_dir):
    for name in ("stackoverflow_word", "stackoverflow_tag"):
        with pytest.raises(UsageError, match=f"--model=cnn is not a model of --task={name}"):
            registry.get(name, TaskConfig(data_dir=fixture_dir, model="cnn"))
    with pytest.raises(UsageError, match="--eval_split=validation is not"):
        registry.get("stackoverflow_word", TaskConfig(data_dir=fixture_dir,
                                                      eval_split="validation"))


def test_missing_data_file_offline_is_one_line(monkeypatch, tmp_path):
    from tensorflow_federated.python.simulation.datasets import download

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(download, "get_compressed_file", offline)
    with pytest.raises(UsageError) as info:
        registry.get("stackoverflow_word", TaskConfig(data_dir=str(tmp_path)))
    message = str(info.value)
    assert "stackoverflow.sqlite not found and could not be downloaded" in message
    assert "\n" not in message



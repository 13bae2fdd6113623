"""Scoring checked against direct computations on hand-made labels and outputs."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tasks import scoring


def test_classification_pairs_and_naive():
    y = np.array([0, 1, 2, 2])
    logits = np.log(np.array([[.7, .2, .1], [.1, .8, .1], [.6, .3, .1], [.2, .2, .6]]))
    pairs = scoring.Scoring().per_example(y, logits)
    np.testing.assert_allclose(pairs["accuracy"][0], [1, 1, 0, 1])
    np.testing.assert_allclose(pairs["loss"][0], -np.log([.7, .8, .1, .6]), rtol=1e-6)
    naive = scoring.Scoring().naive_output(np.array([1, 2, 2, 0]), (3,))
    np.testing.assert_array_equal(naive, [0, 0, 1])


def test_sequence_accuracy_excludes_special_and_padding():
    pad, oov, bos, eos = 0, 5, 6, 7
    s = scoring.SequenceScoring(pad, (oov, bos, eos))
    y = np.array([[1, 2, oov, eos, pad, pad]])
    predicted = np.array([[1, 3, oov, eos, pad, 4]])  # right on 1, oov, eos
    outputs = np.eye(8)[predicted] * 10
    pairs = s.per_example(y, outputs)
    assert pairs["accuracy"][0][0] / pairs["accuracy"][1][0] == pytest.approx(1 / 2)
    assert pairs["accuracy_with_special"][0][0] / pairs["accuracy_with_special"][1][0] == (
        pytest.approx(3 / 4))
    keras_metric = s.train_metrics()[0]
    keras_metric.update_state(tf.constant(y), tf.constant(outputs, tf.float32))
    assert float(keras_metric.result()) == pytest.approx(1 / 2)
    keras_loss = float(s.loss()(tf.constant(y), tf.constant(outputs, tf.float32)))
    assert keras_loss == pytest.approx(pairs["loss"][0][0] / pairs["loss"][1][0], rel=1e-5)


def test_regression_rmse_and_median_baseline():
    s = scoring.RegressionScoring(target_scale=2.0)
    y = np.array([[0.0], [1.0], [3.0]])
    out = np.array([[1.0], [1.0], [1.0]])
    pairs = s.per_example(y, out)
    ratio = pairs["rmse"][0].sum() / pairs["rmse"][1].sum()
    assert s.finish("rmse", ratio) == pytest.approx(np.sqrt(np.mean(((out - y) * 2) ** 2)))
    assert s.naive_output(y, (1,))[0] == 1.0


def test_multilabel_recall_precision_auc():
    s = scoring.MultiLabelScoring(k=2)
    y = np.array([[1, 0, 1, 0], [0, 1, 0, 0]])
    out = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    pairs = s.per_example(y, out)
    np.testing.assert_allclose(pairs["recall_at_2"][0] / pairs["recall_at_2"][1], [0.5, 0])
    np.testing.assert_allclose(pairs["precision_at_2"][0] / 2, [0.5, 0])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(size=200) + labels, 1)  # ties on purpose
    pos, neg = scores[labels == 1], scores[labels == 0]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)])
    assert scoring.roc_auc(labels, scores) == pytest.approx(brute, abs=1e-12)


def test_reconstruction_mse_mae_and_mean_image_baseline():
    s = scoring.ReconstructionScoring()
    y = np.array([[0.0, 1.0], [1.0, 1.0], [0.5, 0.0]])
    out = np.array([[0.5, 0.5], [1.0, 0.0], [0.5, 0.0]])
    pairs = s.per_example(y, out)
    np.testing.assert_allclose(pairs["mse"][0], [0.25, 0.5, 0.0])
    np.testing.assert_allclose(pairs["mae"][0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(s.naive_output(y, (2,)), [0.5, 2 / 3], rtol=1e-6)
    keras_mse = s.train_metrics()[0]
    keras_mse.update_state(tf.constant(y), tf.constant(out))
    assert float(keras_mse.result()) == pytest.approx(np.mean((y - out) ** 2))
    assert s.primary == "mse" and not s.higher_is_better


def test_label_counts_in_chunks_equal_one_bincount() -> None:
    # 3 chunks of 2**16 rows and a partial one; labels 0..49, some excluded.
    labels = np.random.default_rng(0).integers(0, 50, size=(3 * 2**16 + 123, 4))
    labels[-1, -1] = 77  # the largest label only in the last chunk
    kept = labels.ravel()[~np.isin(labels.ravel(), (0, 3))]
    assert np.array_equal(scoring.label_counts(labels, (0, 3)), np.bincount(kept))
    assert np.array_equal(scoring.label_counts(labels), np.bincount(labels.ravel()))

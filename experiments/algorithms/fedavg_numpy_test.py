"""FedAvg rounds through TFF, checked against an independent numpy FedAvg.

`FederatedTrainer` (TFF's weighted / unweighted FedAvg with a server SGD
step of learning rate 1) must produce exactly the average of the clients'
locally trained models. Here the same rounds are recomputed in float64
numpy for softmax regression (the `logistic` model): for each sampled
client, minibatch SGD on the mean sparse cross-entropy over its exact,
seeded batch sequence (several steps, two local epochs, partial last
batches), then the example-weighted (weights = examples trained on, epochs
counted) or plain mean of the client models. The global model must match
to 1e-5 after each of two chained rounds, and the round's train loss,
accuracy and example count must match the numpy forward passes. Sanity
checks guard the comparison's power: the model moves far more than the
tolerance, and the weighted and plain means differ far more than it.

Also checked: the bytes columns against the parameter count computed by
hand (4 bytes x (784 C + C) down; up adds one float32 weight for weighted
averaging, e.g. 4 x 7850 for 10-class logistic regression), and zero bytes
and clients for the centralised baseline.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import numpy as np
import pytest

from experiments.config import ExperimentConfig
from experiments.simulation import sampling
from tasks import registry
from tasks.task import Task

ATOL = 1e-5
PIXELS = 28 * 28


@pytest.fixture(scope="module")
def tff_worker() -> Iterator[None]:
    """One TFF worker for the whole module, stopped at its end."""
    from experiments.core import tff_worker

    with tff_worker.session():
        yield


def _config(emnist_dir: str, **overrides) -> ExperimentConfig:
    settings = dict(
        data_dir=emnist_dir, model="logistic", algorithm="fedavg", server_optimizer="sgd",
        server_learning_rate=1.0, client_learning_rate=0.1, clients_per_round=3,
        client_batch_size=3, client_epochs_per_round=2, seed=3, progress=False)
    settings.update(overrides)
    return ExperimentConfig(**settings)


def _trainer(emnist_dir: str, **overrides):
    """The fixture's task, a FederatedTrainer for `_config(**overrides)` and its
    initial state: (config, task, trainer, state)."""
    from experiments.training.federated_trainer import FederatedTrainer

    config = _config(emnist_dir, **overrides)
    task = registry.get(config.task, config.task_config())
    trainer = FederatedTrainer(config, task)
    return config, task, trainer, trainer.initial_state()


# ----- the numpy reference -------------------------------------------------------------
def _forward(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Per-example cross-entropy, d(mean loss)/d(logits), and hits, for a batch."""
    logits = x @ w + b
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    losses = -np.log(probs[rows, y])
    hits = np.argmax(logits, axis=1) == y
    dlogits = probs
    dlogits[rows, y] -= 1.0
    return losses, dlogits / len(y), hits


def _client_batches(task: Task, config: ExperimentConfig, round_num: int,
                    index: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The client's training batches in the order TFF sees them (same seeded pipeline)."""
    from experiments.training.federated_trainer import client_datasets

    client_id = task.train_data.client_ids[index]
    [dataset] = client_datasets(task, task.train_data.client_ids, [index], config.seed,
                                round_num)
    batches = [(x.reshape(len(y), PIXELS).astype(np.float64), y.astype(np.int64))
               for x, y in dataset.as_numpy_iterator()]
    # Independently of the pipeline: every (capped) example appears once per epoch.
    raw = [int(y) for _, y in
           task.train_data.create_tf_dataset_for_client(client_id).as_numpy_iterator()]
    if config.max_elements_per_client:
        raw = raw[: config.max_elements_per_client]
    seen = collections.Counter(int(v) for _, y in batches for v in y)
    assert seen == collections.Counter(raw * config.client_epochs_per_round)
    assert all(len(y) <= config.client_batch_size for _, y in batches)
    return batches


def _numpy_round(task: Task, config: ExperimentConfig, round_num: int, w: np.ndarray,
                 b: np.ndarray, weighted: bool,
                 mu: float = 0.0) -> tuple[np.ndarray, np.ndarray, dict]:
    """One FedAvg round in float64 (FedProx's, with the gradient of
    mu/2 ||v - v_global||^2 added, when mu != 0); returns the new global model
    and round metrics."""
    chosen = sampling.sample_clients(
        len(task.train_data.client_ids), config.clients_per_round, config.seed, round_num)
    models, sizes = [], []
    loss_sum, hit_sum = 0.0, 0
    for index in chosen:
        wc, bc = w.copy(), b.copy()
        batches = _client_batches(task, config, round_num, int(index))
        assert len(batches) >= 4, "each client should take several SGD steps"
        for x, y in batches:
            losses, dlogits, hits = _forward(wc, bc, x, y)
            loss_sum += float(losses.sum())
            hit_sum += int(hits.sum())
            grad_w = x.T @ dlogits + mu * (wc - w)
            grad_b = dlogits.sum(axis=0) + mu * (bc - b)
            wc -= config.client_learning_rate * grad_w
            bc -= config.client_learning_rate * grad_b
        models.append((wc, bc))
        sizes.append(sum(len(y) for _, y in batches))
    weights = np.asarray(sizes, float) if weighted else np.ones(len(sizes))
    weights /= weights.sum()
    new_w = sum(p * m[0] for p, m in zip(weights, models, strict=True))
    new_b = sum(p * m[1] for p, m in zip(weights, models, strict=True))
    plain_w = np.mean([m[0] for m in models], axis=0)
    examples = int(sum(sizes))
    metrics = {"train_examples": examples, "train_loss": loss_sum / examples,
               "train_accuracy": hit_sum / examples, "clients": len(chosen),
               "plain_mean_gap": float(np.abs(new_w - plain_w).max())}
    return new_w, new_b, metrics


# ----- TFF vs numpy ----------------------------------------------------------------
def _params(num_classes: int) -> int:
    return PIXELS * num_classes + num_classes


@pytest.mark.parametrize("algorithm,only_digits,cap", [
    ("fedavg", False, 0),
    ("fedavg_unweighted", True, 13),
])
def test_fedavg_rounds_match_numpy(tff_worker, emnist_dir: str, algorithm: str,
                                   only_digits: bool, cap: int) -> None:
    config, task, trainer, state = _trainer(
        emnist_dir, algorithm=algorithm, only_digits=only_digits,
        max_elements_per_client=cap)
    w0, b0 = trainer.model_weights(state)
    num_classes = 10 if only_digits else 62
    assert w0.shape == (PIXELS, num_classes) and b0.shape == (num_classes,)
    # The global model starts from the seeded Keras initialisation.
    keras_w, keras_b = task.build_model(config.seed).get_weights()
    np.testing.assert_array_equal(w0, keras_w)
    np.testing.assert_array_equal(b0, keras_b)

    weighted = algorithm == "fedavg"
    w, b = w0.astype(np.float64), b0.astype(np.float64)
    for round_num in (1, 2):
        state, row = trainer.run_round(state, round_num)
        w_tff, b_tff = trainer.model_weights(state)
        previous = w
        w, b, expected = _numpy_round(task, config, round_num, w, b, weighted)
        np.testing.assert_allclose(w_tff, w, rtol=0, atol=ATOL)
        np.testing.assert_allclose(b_tff, b, rtol=0, atol=ATOL)
        # The comparison has power: the round moved the model, and the
        # other averaging rule would have been detected.
        assert np.abs(w - previous).max() > 100 * ATOL
        if weighted:
            assert expected["plain_mean_gap"] > 10 * ATOL
        assert row["train_examples"] == expected["train_examples"]
        assert row["clients"] == expected["clients"] == config.clients_per_round
        assert row["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)
        assert row["train_accuracy"] == pytest.approx(expected["train_accuracy"], abs=1e-6)
        # Bytes: the full float32 model down; the update (plus one float32
        # weight when averaging is weighted) up.
        params = _params(num_classes)
        assert row["bytes_down_per_client"] == 4 * params
        assert row["bytes_up_per_client"] == 4 * (params + (1 if weighted else 0))
    if only_digits:
        assert row["bytes_down_per_client"] == 4 * 7850


def test_fedprox_rounds_match_numpy_and_tffs_sign_is_reversed(tff_worker,
                                                               emnist_dir: str) -> None:
    """Our FedProx takes the gradient of mu/2 ||v - v_global||^2 (Li et al. 2020).

    TFF 0.87's own FedProx adds mu (v_global - v) instead, pushing clients away
    from the global model: its round equals the numpy round with -mu. The
    project therefore trains FedProx with its own client work.
    """
    from experiments.algorithms import builder
    from experiments.training.federated_trainer import sampled_client_datasets

    mu = 0.5
    config, task, trainer, state = _trainer(emnist_dir, algorithm="fedprox",
                                            proximal_strength=mu)
    w0, b0 = (a.astype(np.float64) for a in trainer.model_weights(state))
    state, row = trainer.run_round(state, 1)
    w_ours, b_ours = trainer.model_weights(state)
    w, b, expected = _numpy_round(task, config, 1, w0, b0, weighted=True, mu=mu)
    np.testing.assert_allclose(w_ours, w, rtol=0, atol=ATOL)
    np.testing.assert_allclose(b_ours, b, rtol=0, atol=ATOL)
    assert row["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)
    w_fedavg, _, _ = _numpy_round(task, config, 1, w0, b0, weighted=True)
    assert np.abs(w - w_fedavg).max() > 100 * ATOL  # the proximal term mattered

    stock = builder.build_tff_stock(config, task)
    datasets = sampled_client_datasets(task, config, 1)
    stock_state = stock.next(stock.initialize(), datasets).state
    w_tff = np.asarray(stock.get_model_weights(stock_state).trainable[0])
    w_reversed, _, _ = _numpy_round(task, config, 1, w0, b0, weighted=True, mu=-mu)
    np.testing.assert_allclose(w_tff, w_reversed, rtol=0, atol=ATOL)
    assert np.abs(w_tff - w).max() > 100 * ATOL


def test_centralized_rows_count_no_bytes_or_clients(emnist_dir: str) -> None:
    from experiments.training.centralized_trainer import CentralizedTrainer

    config = _config(emnist_dir, algorithm="centralized")
    task = registry.get(config.task, config.task_config())
    assert task.build_model(config.seed).count_params() == _params(62) == 48670
    trainer = CentralizedTrainer(config, task)
    state, row = trainer.run_round(trainer.initial_state(), 1)
    assert row["clients"] == 0
    assert row["bytes_down_per_client"] == row["bytes_up_per_client"] == 0
    assert row["train_examples"] == trainer.steps_per_round * config.client_batch_size
    assert [np.shape(a) for a in state] == [(PIXELS, 62), (62,)]

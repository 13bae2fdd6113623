"""Clients' own models (Ditto, local layers) against independent numpy recomputations.

Ditto (softmax regression): two FedAvg rounds with --ditto_lambda; in numpy,
the global model follows FedAvg exactly (Ditto must not touch it) and each
participating client's personal model v takes SGD steps on its round batches
with the gradient of f(v) + lambda/2 ||v - w||^2, w the global model it
received. Every personal model must match to 1e-5, with power (lambda = 0 is
detected), and the personalising evaluator's 'own' score of each client must
be its personal model's test accuracy computed in numpy.

Local layers (2NN, last layer local): in numpy, each client starts from the
shared layers and its own last layer (the initial one on its first round),
trains by SGD on its batches, keeps its last layer, and the shared layers move
by the example-weighted mean delta. After three rounds (clients revisited) the
shared layers and every client's last layer must match to 1e-5; the server's
last layer never changes; uploads and downloads count the shared layers only.
Checkpoints round-trip the clients' models, and the one-line refusals hold.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from experiments.algorithms.fedavg_numpy_test import (
    ATOL,
    _client_batches,
    _forward,
    _numpy_round,
    _trainer,
)
from experiments.config import ExperimentConfig, validate
from experiments.core.errors import UsageError
from experiments.simulation import sampling
from experiments.training import personalization

LAMBDA = 0.5


@pytest.fixture(scope="module")
def tff_worker() -> Iterator[None]:
    """One TFF worker for the whole module, stopped at its end."""
    from experiments.core import tff_worker

    with tff_worker.session():
        yield


def _chosen(config: ExperimentConfig, population: int, round_num: int) -> list[int]:
    return [int(i) for i in sampling.sample_clients(population, config.clients_per_round,
                                                    config.seed, round_num)]


def _ditto_pass(batches, v: list, w: list, lr: float, lam: float) -> list:
    v = [p.copy() for p in v]
    for x, y in batches:
        _, dlogits, _ = _forward(v[0], v[1], x, y)
        grads = [x.T @ dlogits, dlogits.sum(axis=0)]
        v = [p - lr * (g + lam * (p - a)) for p, g, a in zip(v, grads, w, strict=True)]
    return v


def test_ditto_personal_models_match_numpy(tff_worker, emnist_dir: str) -> None:
    config, task, trainer, state = _trainer(emnist_dir, ditto_lambda=LAMBDA,
                                            clients_per_round=4)
    population = trainer.population
    w = [a.astype(np.float64) for a in trainer.model_weights(state)]
    initial = [p.copy() for p in w]
    personal: dict[int, list] = {}
    plain: dict[int, list] = {}  # lambda = 0
    for round_num in (1, 2, 3):
        state, _ = trainer.run_round(state, round_num)
        for index in _chosen(config, population, round_num):
            batches = _client_batches(task, config, round_num, index)
            personal[index] = _ditto_pass(batches, personal.get(index, initial), w,
                                          config.client_learning_rate, LAMBDA)
            plain[index] = _ditto_pass(batches, plain.get(index, initial), w,
                                       config.client_learning_rate, 0.0)
        w_new, b_new, _ = _numpy_round(task, config, round_num, w[0], w[1], weighted=True)
        w = [w_new, b_new]
        for mine, expected in zip(trainer.model_weights(state), w, strict=True):
            np.testing.assert_allclose(mine, expected, rtol=0, atol=ATOL)  # FedAvg, as is
    ids = task.train_data.client_ids
    own = trainer.personal_models(state)
    assert sorted(own) == sorted(ids[i] for i in personal)
    for index, expected in personal.items():
        for mine, theirs in zip(own[ids[index]], expected, strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=0, atol=ATOL)
        assert np.abs(plain[index][0] - expected[0]).max() > 100 * ATOL  # lambda mattered

    # The evaluator scores each client's own model on its own test data.
    scorer = personalization.Personalizer(task, 0, config.client_batch_size,
                                          config.client_learning_rate, config.seed, own=True)
    records = {r["client_id"]: r for r in scorer.client_scores(trainer.model_weights(state),
                                                                own)}
    for index, (v_w, v_b) in personal.items():
        x, y = task.test_data.arrays(ids[index])
        _, _, hits = _forward(v_w, v_b, x.reshape(len(y), -1).astype(np.float64),
                              y.astype(np.int64))
        assert records[ids[index]]["own"] == pytest.approx(hits.mean(), abs=1e-6)
        assert records[ids[index]]["after"] == ""  # no fine-tuning steps asked for
    row = scorer.row(list(records.values()))
    assert row["personal_own_clients"] == len(personal)

    restored = trainer.from_arrays(trainer.to_arrays(state))
    again = trainer.personal_models(restored)
    for client, weights in own.items():
        for a, b in zip(again[client], weights, strict=True):
            np.testing.assert_array_equal(a, b)


# ----- local layers on the 2NN ----------------------------------------------------------
def _two_nn_grads(params: list, x: np.ndarray, y: np.ndarray) -> list:
    """Gradients of the mean cross-entropy of the 2NN (relu, relu, softmax)."""
    w1, b1, w2, b2, w3, b3 = params
    z1 = x @ w1 + b1
    h1 = np.maximum(z1, 0)
    z2 = h1 @ w2 + b2
    h2 = np.maximum(z2, 0)
    logits = h2 @ w3 + b3
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(y)), y] -= 1.0
    d3 = probs / len(y)
    d2 = (d3 @ w3.T) * (z2 > 0)
    d1 = (d2 @ w2.T) * (z1 > 0)
    return [x.T @ d1, d1.sum(0), h1.T @ d2, d2.sum(0), h2.T @ d3, d3.sum(0)]


def test_local_layers_match_numpy(tff_worker, emnist_dir: str) -> None:
    config, task, trainer, state = _trainer(
        emnist_dir, model="2nn", local_layers=1, clients_per_round=4,
        server_learning_rate=0.9, client_epochs_per_round=1)
    population = trainer.population
    shared = [a.astype(np.float64) for a in trainer.model_weights(state)]
    server_head = [p.copy() for p in shared[4:]]
    heads: dict[int, list] = {}
    revisited = False
    for round_num in (1, 2, 3):
        state, row = trainer.run_round(state, round_num)
        moves, sizes = [], []
        for index in _chosen(config, population, round_num):
            revisited |= index in heads
            params = shared[:4] + heads.get(index, server_head)
            start = [p.copy() for p in params]
            batches = _client_batches(task, config, round_num, index)
            for x, y in batches:
                params = [p - config.client_learning_rate * g for p, g in
                          zip(params, _two_nn_grads(params, x, y), strict=True)]
            heads[index] = params[4:]
            moves.append([s - p for s, p in zip(start[:4], params[:4], strict=True)])
            sizes.append(sum(len(y) for _, y in batches))
        share = np.asarray(sizes, float) / sum(sizes)
        shared = [s - config.server_learning_rate * sum(
            f * m[k] for f, m in zip(share, moves, strict=True))
            for k, s in enumerate(shared[:4])] + shared[4:]
        ours = trainer.model_weights(state)
        for mine, expected in zip(ours[:4], shared[:4], strict=True):
            np.testing.assert_allclose(mine, expected, rtol=0, atol=ATOL)
        for mine, expected in zip(ours[4:], server_head, strict=True):
            np.testing.assert_array_equal(mine, expected.astype(np.float32))  # never sent
    assert revisited, "no client came back: its own last layer was never used"
    ids = task.train_data.client_ids
    own = trainer.personal_models(state)
    assert sorted(own) == sorted(ids[i] for i in heads)
    for index, head in heads.items():
        for mine, expected in zip(own[ids[index]][4:], head, strict=True):
            np.testing.assert_allclose(mine, expected, rtol=0, atol=ATOL)
        np.testing.assert_allclose(own[ids[index]][0], shared[0], rtol=0, atol=ATOL)
        assert np.abs(head[0] - server_head[0]).max() > 100 * ATOL
    shared_floats = sum(p.size for p in shared[:4])
    assert row["bytes_down_per_client"] == 4 * shared_floats
    assert row["bytes_up_per_client"] == 4 * shared_floats + 4  # + the example weight
    assert trainer.summary["client_state"] == "local layers"
    assert trainer.summary["client_state_mib_per_client"] == pytest.approx(
        4 * (200 * 62 + 62) / 2 ** 20)


@pytest.mark.parametrize("flags, start", [
    ({"ditto_lambda": 1.0, "local_layers": 1}, "--ditto_lambda and --local_layers are two"),
    ({"ditto_lambda": -1.0}, "--ditto_lambda=-1.0 must be"),
    ({"local_layers": 1, "dp": "fixed", "algorithm": "fedavg_unweighted"},
     "--local_layers needs --dp=none"),
    ({"local_layers": 1, "algorithm": "fedprox"}, "--local_layers needs --algorithm=fedavg"),
    ({"ditto_lambda": 1.0, "algorithm": "centralized"}, "--ditto_lambda and --local_layers "
                                                        "personalise federated training"),
])
def test_bad_personal_flags_are_one_line(flags: dict, start: str) -> None:
    with pytest.raises(UsageError) as caught:
        validate(ExperimentConfig(**flags))
    assert str(caught.value).startswith(start), str(caught.value)


def test_ditto_keeps_the_global_models_dp_path() -> None:
    """Personal models never leave the clients: Ditto combines with central DP."""
    validate(ExperimentConfig(ditto_lambda=0.1, algorithm="fedavg_unweighted", dp="fixed",
                              noise_multiplier=1.0))


def test_too_many_local_layers_are_refused(tff_worker, emnist_dir: str) -> None:
    with pytest.raises(UsageError, match=r"--local_layers=3 must be in 1\.\.2"):
        _trainer(emnist_dir, model="2nn", local_layers=3)


def test_rows_carry_exactly_the_columns_of_their_run(emnist_dir: str) -> None:
    """A row has the 'own' columns only when the run keeps clients' models (a fine-tuning
    run without them once wrote personal_own_clients into a layout without it)."""
    from tasks import registry

    config = ExperimentConfig(data_dir=emnist_dir, model="logistic")
    task = registry.get(config.task, config.task_config())
    weights = task.build_model(0).get_weights()
    for own, steps in ((False, 2), (True, 2), (True, 0)):
        scorer = personalization.Personalizer(task, steps, 4, 0.1, 0, own=own)
        row = scorer.row(scorer.client_scores(weights, {}))
        expected = set(personalization.columns(steps, task.scoring, own))
        assert set(row) == expected - {c for c in expected if "_own_" in c and
                                       not c.endswith("clients")}, (own, steps)

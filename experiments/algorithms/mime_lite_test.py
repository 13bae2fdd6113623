"""TFF 0.87's Mime-Lite, checked against an independent numpy Mime-Lite before use.

Mime-Lite (Karimireddy et al. 2021, "Breaking the centralized barrier for
cross-device federated learning"): the server keeps its optimizer's state s;
each sampled client computes its full-batch gradient at the broadcast model x,
then trains locally with the same optimizer at the client learning rate using
s, frozen for the round (a second pass over its data, which the seeded shuffle
orders anew); the server moves x by the clients' example-weighted
mean update (SGD at the server learning rate) and updates s with their
example-weighted mean full-batch gradient. With SGD + momentum (TFF's
convention m <- beta m + g, step lr m) a client step is y <- y - lr (beta m +
g(y)) and the server's state update m <- beta m + mean g_i(x).

Recomputed here in float64 for softmax regression over the exact seeded batch
sequences TFF sees: the global model after each of three rounds must match to
1e-5, with power: the momentum the clients use moves the model far more than
the tolerance (the same rounds without it are detected), as does a server
state fed the clients' local-training gradients instead of the full-batch ones.
The builder therefore uses TFF's own Mime-Lite (unlike FedProx, whose TFF
version has the wrong sign).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from experiments.algorithms.fedavg_numpy_test import ATOL, _client_batches, _forward, _trainer
from experiments.config import ExperimentConfig, validate
from experiments.core.errors import UsageError
from experiments.simulation import sampling

ROUNDS = 3
MOMENTUM = 0.9


@pytest.fixture(scope="module")
def tff_worker() -> Iterator[None]:
    """One TFF worker for the whole module, stopped at its end."""
    from experiments.core import tff_worker

    with tff_worker.session():
        yield


def _gradient(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray):
    _, dlogits, _ = _forward(w, b, x, y)
    return [x.T @ dlogits, dlogits.sum(axis=0)]


def _training_pass(task, config: ExperimentConfig, round_num: int, index: int) -> list:
    """The batches of the client's second pass over its dataset: Mime-Lite's client reads
    it twice (full gradient, then training), and the seeded shuffle reshuffles per pass."""
    from experiments.training.federated_trainer import client_datasets

    [dataset] = client_datasets(task, task.train_data.client_ids, [index], config.seed,
                                round_num)
    passes = [[(x.reshape(len(y), -1).astype(np.float64), y.astype(np.int64))
               for x, y in dataset.as_numpy_iterator()] for _ in range(2)]
    assert [len(y) for _, y in passes[0]] == [len(y) for _, y in passes[1]]
    return passes[1]


def _numpy_round(task, config: ExperimentConfig, round_num: int, model: list,
                 momentum: list, population: int, use_momentum: bool = True,
                 full_gradient: bool = True):
    """One Mime-Lite round (SGD + momentum base optimizer) in float64."""
    lr, server_lr = config.client_learning_rate, config.server_learning_rate
    chosen = sampling.sample_clients(population, config.clients_per_round, config.seed,
                                     round_num)
    updates, gradients, weights = [], [], []
    for index in chosen:
        batches = _client_batches(task, config, round_num, int(index))
        examples = sum(len(y) for _, y in batches)
        # The full-batch gradient at x: the example-weighted mean of the batch gradients.
        full = [np.zeros_like(p) for p in model]
        for x, y in batches:
            for k, g in enumerate(_gradient(model[0], model[1], x, y)):
                full[k] += g * len(y) / examples
        w, b = (p.copy() for p in model)
        local = [np.zeros_like(p) for p in model]
        for x, y in _training_pass(task, config, round_num, int(index)):
            g = _gradient(w, b, x, y)
            local = [acc + gk * len(y) / examples for acc, gk in zip(local, g, strict=True)]
            beta = MOMENTUM if use_momentum else 0.0
            w = w - lr * (beta * momentum[0] + g[0])
            b = b - lr * (beta * momentum[1] + g[1])
        updates.append([model[0] - w, model[1] - b])
        gradients.append(full if full_gradient else local)
        weights.append(examples)
    p = np.asarray(weights, float) / sum(weights)
    model = [m - server_lr * sum(pi * u[k] for pi, u in zip(p, updates, strict=True))
             for k, m in enumerate(model)]
    momentum = [MOMENTUM * m + sum(pi * g[k] for pi, g in zip(p, gradients, strict=True))
                for k, m in enumerate(momentum)]
    return model, momentum


def test_tffs_mime_lite_matches_numpy(tff_worker, emnist_dir: str) -> None:
    config, task, trainer, state = _trainer(
        emnist_dir, algorithm="mime_lite", server_optimizer="sgdm",
        server_sgd_momentum=MOMENTUM, client_learning_rate=0.05, server_learning_rate=0.8)
    population = trainer.population
    model = [a.astype(np.float64) for a in trainer.model_weights(state)]
    momentum = [np.zeros_like(p) for p in model]
    local_model, local_momentum = model, momentum  # state fed local-training gradients
    for round_num in range(1, ROUNDS + 1):
        state, row = trainer.run_round(state, round_num)
        no_momentum, _ = _numpy_round(task, config, round_num, model, momentum, population,
                                      use_momentum=False)
        local_model, local_momentum = _numpy_round(task, config, round_num, local_model,
                                                   local_momentum, population,
                                                   full_gradient=False)
        before = model
        model, momentum = _numpy_round(task, config, round_num, model, momentum, population)
        for mine, expected in zip(trainer.model_weights(state), model, strict=True):
            np.testing.assert_allclose(mine, expected, rtol=0, atol=ATOL)
        assert np.abs(model[0] - before[0]).max() > 100 * ATOL
        assert row["clients"] == config.clients_per_round
        if round_num >= 2:  # the server's momentum is non-zero from round 2 on
            assert np.abs(no_momentum[0] - model[0]).max() > 100 * ATOL
            assert np.abs(local_model[0] - model[0]).max() > 100 * ATOL
    # Down: the model and the momentum; up: the update, its weight, the full gradient.
    params = sum(p.size for p in model)
    assert row["bytes_down_per_client"] == 8 * params
    assert row["bytes_up_per_client"] == 8 * params + 4


def test_flags_mime_lite_cannot_honour_are_refused() -> None:
    with pytest.raises(UsageError) as caught:
        validate(ExperimentConfig(algorithm="mime_lite", aggregator="median"))
    message = str(caught.value)
    assert message.startswith("--algorithm=mime_lite needs --aggregator=mean (got median): "
                              "its clients also upload a full-batch gradient"), message
    validate(ExperimentConfig(algorithm="mime_lite", server_optimizer="adam"))

"""The lean FedAvg must compute what TFF's weighted FedAvg computes.

TFF's FedAvg (through `FederatedTrainer`) is itself checked against a numpy
FedAvg in fedavg_numpy_test.py; here two chained rounds of the lean process on
the same seeded client datasets (softmax regression: no dropout, so both are
deterministic) must give the same global model to 1e-5, and the model must
move far more than that.
"""

from __future__ import annotations

import numpy as np
import pytest

from experiments import lean_fedavg, runtime, sampling
from experiments.config import ExperimentConfig
from tasks import registry


@pytest.fixture(scope="module")
def tff_worker():
    with runtime.session():
        yield


def test_lean_rounds_equal_tffs_weighted_fedavg(tff_worker, emnist_dir: str) -> None:
    from experiments.federated import FederatedTrainer

    config = ExperimentConfig(
        data_dir=emnist_dir, model="logistic", algorithm="fedavg", server_optimizer="sgd",
        server_learning_rate=1.0, client_learning_rate=0.1, clients_per_round=3,
        client_batch_size=3, client_epochs_per_round=2, seed=3, progress=False)
    task = registry.get(config.task, config.task_config())
    trainer = FederatedTrainer(config, task)
    lean = lean_fedavg.build(task, config.seed, config.client_learning_rate,
                             config.server_learning_rate)
    state, lean_state = trainer.initial_state(), lean.initialize()
    start = [np.asarray(w) for w in lean.get_model_weights(lean_state).trainable]
    assert all(np.array_equal(a, b) for a, b in zip(start, trainer.model_weights(state),
                                                    strict=False))
    ids = task.train_data.client_ids
    for round_num in (1, 2):
        state, _ = trainer.run_round(state, round_num)
        chosen = sampling.select_clients(config.client_sampling, len(ids),
                                         config.clients_per_round, config.seed, round_num)
        datasets = [task.preprocess_train(task.train_data.create_tf_dataset_for_client(
            ids[i]), sampling.client_shuffle_seed(config.seed, round_num, i))
            for i in chosen]
        lean_state = lean.next(lean_state, datasets).state
    ours = [np.asarray(w) for w in lean.get_model_weights(lean_state).trainable]
    theirs = trainer.model_weights(state)
    for a, b, s in zip(ours, theirs, start, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert np.abs(a - s).max() > 1e-2  # the rounds moved the model

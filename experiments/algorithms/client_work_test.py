"""Our client work must compute exactly what TFF's computes.

`experiments.algorithms.builder.build` composes FedAvg/FedProx around
`experiments.algorithms.client_work`; `build_tff_stock` is TFF's own builder for the same
config. Two chained rounds on the same seeded client datasets (softmax
regression: no dropout, so both are deterministic) must give the same global
model and the same train metrics, with the model moving far more than the
tolerance. fedavg_numpy_test.py checks the result against a numpy FedAvg, and FedProx
(where TFF 0.87's proximal gradient has the wrong sign) against a numpy FedProx.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_federated as tff

from experiments.algorithms import builder
from experiments.config import ExperimentConfig
from experiments.core import tff_worker
from experiments.training.federated_trainer import sampled_client_datasets
from tasks import registry


@pytest.fixture(scope="module")
def worker():
    with tff_worker.session():
        yield


def _two_rounds(learning_process, task, config):
    state = learning_process.initialize()
    start = [np.asarray(w) for w in learning_process.get_model_weights(state).trainable]
    for round_num in (1, 2):
        output = learning_process.next(state, sampled_client_datasets(task, config, round_num))
        state = output.state
    weights = [np.asarray(w) for w in learning_process.get_model_weights(state).trainable]
    return start, weights, dict(output.metrics["client_work"]["train"])


@pytest.mark.parametrize("overrides", [
    {"algorithm": "fedavg"},
    {"algorithm": "fedavg_unweighted"},
    {"algorithm": "fedavg", "server_optimizer": "adam", "server_learning_rate": 0.05},
    {"algorithm": "fedavg_unweighted", "dp": "fixed", "clip": 0.1,
     "noise_multiplier": 0.0},
], ids=["fedavg", "unweighted", "fedadam", "dp_clip"])
def test_rounds_and_metrics_equal_tffs(worker, emnist_dir: str, overrides) -> None:
    settings = {"data_dir": emnist_dir, "model": "logistic", "server_optimizer": "sgd",
                "server_learning_rate": 1.0, "client_learning_rate": 0.1,
                "clients_per_round": 3, "client_batch_size": 3,
                "client_epochs_per_round": 2, "seed": 3, "progress": False, **overrides}
    config = ExperimentConfig(**settings)
    task = registry.get(config.task, config.task_config())
    built, stock = builder.build(config, task), builder.build_tff_stock(config, task)
    # Same state layout as TFF's: checkpoints of either load into the other.
    assert built.initialize.type_signature.is_equivalent_to(stock.initialize.type_signature)
    start, ours, our_metrics = _two_rounds(built, task, config)
    stock_start, theirs, their_metrics = _two_rounds(stock, task, config)
    for a, b in zip(start, stock_start, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b, s in zip(ours, theirs, start, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert np.abs(a - s).max() > 1e-3  # the rounds moved the model (100x the tolerance)
    assert our_metrics.keys() == their_metrics.keys()
    for name, value in their_metrics.items():
        np.testing.assert_allclose(our_metrics[name], value, rtol=1e-5, err_msg=name)
    assert our_metrics["num_examples"] > 0


def test_non_finite_update_is_zeroed_with_weight_zero(worker, emnist_dir: str) -> None:
    from experiments.algorithms import client_work

    config = ExperimentConfig(data_dir=emnist_dir, model="logistic", clients_per_round=2,
                              seed=1, progress=False)
    task = registry.get(config.task, config.task_config())
    initial, _, _, _ = builder.fedavg_parts(config, task)
    work = client_work.build(task, config.seed, float("inf"),
                             tff.learning.ClientWeighting.NUM_EXAMPLES)
    output = work.next(work.initialize(), [initial()] * 2, sampled_client_datasets(task, config, 1))
    for result in output.result:
        assert float(result.update_weight) == 0.0
        assert all(not np.any(np.asarray(u)) for u in result.update)
    assert float(output.measurements["train"]["num_examples"]) == 0  # metrics reset too


def test_models_built_before_still_run_after(worker, emnist_dir: str) -> None:
    # Building the client work builds models inside graphs, which swaps Keras's
    # classes to v1; a model the caller built eagerly before (the benchmark's
    # centralised loop) must still run afterwards.
    config = ExperimentConfig(data_dir=emnist_dir, model="cnn", progress=False)
    task = registry.get(config.task, config.task_config())
    before = task.build_model(config.seed)
    builder.build(config, task)
    x = np.zeros((2, 28, 28, 1), np.float32)
    assert before(x, training=True).shape == (2, 62)

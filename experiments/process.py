"""The single builder of TFF iterative processes from an ExperimentConfig.

Algorithm (FedAvg, unweighted FedAvg, FedSGD, FedProx) and server optimizer
(FedOpt: SGD, SGD with momentum, Adam, Yogi, Adagrad) are chosen here; the
model aggregator (where DP and compression plug in) comes from
`experiments.aggregators`.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_federated as tff

from experiments import aggregators
from experiments.config import ExperimentConfig
from tasks.task import Task


def server_optimizer(config: ExperimentConfig) -> tff.learning.optimizers.Optimizer:
    """The server optimizer that turns the aggregated update into a model step."""
    lr = config.server_learning_rate
    name = config.server_optimizer
    if name == "sgd":
        return tff.learning.optimizers.build_sgdm(learning_rate=lr)
    if name == "sgdm":
        return tff.learning.optimizers.build_sgdm(
            learning_rate=lr, momentum=config.server_sgd_momentum)
    if name == "adam":
        return tff.learning.optimizers.build_adam(
            learning_rate=lr, beta_1=config.server_beta_1,
            beta_2=config.server_beta_2, epsilon=config.server_epsilon)
    if name == "yogi":
        return tff.learning.optimizers.build_yogi(
            learning_rate=lr, beta_1=config.server_beta_1,
            beta_2=config.server_beta_2, epsilon=config.server_epsilon,
            initial_preconditioner_value=config.server_initial_accumulator_value)
    if name == "adagrad":
        return tff.learning.optimizers.build_adagrad(
            learning_rate=lr, epsilon=config.server_epsilon,
            initial_preconditioner_value=config.server_initial_accumulator_value)
    raise ValueError(f"unknown server optimizer {name}")


def model_fn_for(task: Task, seed: int):
    """A no-argument builder of the task's model as a TFF VariableModel."""
    input_spec = task.input_spec()

    def model_fn() -> tff.learning.models.VariableModel:
        return tff.learning.models.from_keras_model(
            task.build_model(seed), loss=task.loss(), input_spec=input_spec,
            metrics=task.metrics())

    return model_fn


def _weight_specs(task: Task, seed: int) -> list:
    model = task.build_model(seed)
    return [tf.TensorSpec(w.shape, w.dtype) for w in model.trainable_weights]


def build(config: ExperimentConfig, task: Task) -> tff.learning.templates.LearningProcess:
    """The learning process the config describes, ready for initialize/next."""
    model_fn = model_fn_for(task, config.seed)
    client = tff.learning.optimizers.build_sgdm(learning_rate=config.client_learning_rate)
    server = server_optimizer(config)
    aggregator = aggregators.build(config, _weight_specs(task, config.seed))
    algorithms = tff.learning.algorithms
    if config.algorithm == "fedavg":
        return algorithms.build_weighted_fed_avg(
            model_fn, client_optimizer_fn=client, server_optimizer_fn=server,
            model_aggregator=aggregator)
    if config.algorithm == "fedavg_unweighted":
        return algorithms.build_unweighted_fed_avg(
            model_fn, client_optimizer_fn=client, server_optimizer_fn=server,
            model_aggregator=aggregator)
    if config.algorithm == "fedsgd":
        return algorithms.build_fed_sgd(
            model_fn, server_optimizer_fn=server, model_aggregator=aggregator)
    if config.algorithm == "fedprox":
        return algorithms.build_weighted_fed_prox(
            model_fn, proximal_strength=config.proximal_strength,
            client_optimizer_fn=client, server_optimizer_fn=server,
            model_aggregator=aggregator)
    raise ValueError(f"{config.algorithm} is not a federated algorithm")

"""The server optimizer (FedOpt, Reddi et al. 2021): how the averaged update moves the model.

With `sgd` at learning rate 1 the server takes the clients' mean update as is
(FedAvg); the adaptive ones (adam, yogi, adagrad) treat it as a pseudo-gradient.
"""

from __future__ import annotations

import tensorflow_federated as tff

from experiments.algorithms.settings import ServerOptimizerSettings


def build(settings: ServerOptimizerSettings) -> tff.learning.optimizers.Optimizer:
    """The server optimizer that turns the aggregated update into a model step."""
    lr = settings.server_learning_rate
    name = settings.server_optimizer
    if name == "sgd":
        return tff.learning.optimizers.build_sgdm(learning_rate=lr)
    if name == "sgdm":
        return tff.learning.optimizers.build_sgdm(
            learning_rate=lr, momentum=settings.server_sgd_momentum)
    if name == "adam":
        return tff.learning.optimizers.build_adam(
            learning_rate=lr, beta_1=settings.server_beta_1,
            beta_2=settings.server_beta_2, epsilon=settings.server_epsilon)
    if name == "yogi":
        return tff.learning.optimizers.build_yogi(
            learning_rate=lr, beta_1=settings.server_beta_1,
            beta_2=settings.server_beta_2, epsilon=settings.server_epsilon,
            initial_preconditioner_value=settings.server_initial_accumulator_value)
    if name == "adagrad":
        return tff.learning.optimizers.build_adagrad(
            learning_rate=lr, epsilon=settings.server_epsilon,
            initial_preconditioner_value=settings.server_initial_accumulator_value)
    raise ValueError(f"unknown server optimizer {name}")

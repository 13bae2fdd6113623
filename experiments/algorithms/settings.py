"""The server optimizer flags (FedOpt, Reddi et al. 2021), free of TensorFlow."""

from __future__ import annotations

import dataclasses

from experiments.core.settings import setting

SERVER_OPTIMIZERS = ("sgd", "sgdm", "adam", "yogi", "adagrad")


@dataclasses.dataclass(frozen=True)
class ServerOptimizerSettings:
    """The server optimizer flags (names as in google-research/federated)."""

    server_optimizer: str = setting("sgd", "Server optimizer (FedOpt).", SERVER_OPTIMIZERS)
    server_learning_rate: float = setting(1.0, "Server learning rate.")
    server_sgd_momentum: float = setting(0.9, "Momentum for --server_optimizer=sgdm.")
    server_beta_1: float = setting(0.9, "First-moment decay for adam / yogi.")
    server_beta_2: float = setting(0.999, "Second-moment decay for adam / yogi.")
    server_epsilon: float = setting(1e-3, "Adaptivity epsilon (tau) for adam / yogi / "
                                    "adagrad.")
    server_initial_accumulator_value: float = setting(
        0.0, "Initial preconditioner value for yogi / adagrad.")

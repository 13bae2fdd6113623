"""The single builder of TFF iterative processes from a run's settings.

Algorithm (FedAvg, unweighted FedAvg, FedSGD, FedProx, SCAFFOLD, Mime-Lite) and server optimizer
(FedOpt: SGD, SGD with momentum, Adam, Yogi, Adagrad) are chosen here; the
model aggregator (where DP and compression plug in) comes from
`experiments.aggregators.chain`, the clients' local training from
`experiments.algorithms.client_work`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from experiments.aggregators import chain
from experiments.algorithms import client_work, local_layers, scaffold, server_optimizer
from experiments.algorithms.settings import ServerOptimizerSettings
from experiments.config import ExperimentConfig
from experiments.core.settings import pick
from tasks.task import Task


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


def _server(config: ExperimentConfig) -> tff.learning.optimizers.Optimizer:
    return server_optimizer.build(pick(ServerOptimizerSettings, config))


def _aggregator(config: ExperimentConfig, weight_specs: list, population: int = 0):
    """The aggregator chain's factory (None: TFF's default mean)."""
    return chain.build(chain.ChainSettings.of(config, population), weight_specs)


class FedAvgParts(NamedTuple):
    """The pieces a FedAvg/FedProx round is composed of."""

    initial_weights: tff.Computation
    client_work: tff.learning.templates.ClientWorkProcess
    aggregator: tff.templates.AggregationProcess
    finalizer: tff.learning.templates.FinalizerProcess


def fedavg_parts(config: ExperimentConfig, task: Task, population: int = 0) -> FedAvgParts:
    """The pieces of FedAvg/FedProx (initial weights, client work, model
    aggregation, server finalizer), shared by the composed process and the
    split round (`experiments.algorithms.split_round`); `population`: the
    clients sampled from (banded_mf's strategy depends on it)."""
    keras_model = task.build_model(config.seed)
    trainable = [w.numpy() for w in keras_model.trainable_weights]
    non_trainable = [w.numpy() for w in keras_model.non_trainable_weights]

    @tff.tensorflow.computation()
    def initial_weights():
        return tff.learning.models.ModelWeights(
            trainable=[tf.constant(w) for w in trainable],
            non_trainable=[tf.constant(w) for w in non_trainable])

    weights_type = initial_weights.type_signature.result
    weighted = config.algorithm != "fedavg_unweighted"
    weighting = (tff.learning.ClientWeighting.NUM_EXAMPLES if weighted
                 else tff.learning.ClientWeighting.UNIFORM)
    proximal = config.proximal_strength if config.algorithm == "fedprox" else 0.0
    work = client_work.build(task, config.seed, config.client_learning_rate, weighting,
                             proximal)
    factory = _aggregator(config, [tf.TensorSpec(w.shape, w.dtype) for w in trainable],
                          population)
    if weighted:
        factory = factory or tff.aggregators.MeanFactory()
    else:
        factory = tff.aggregators.as_weighted_aggregator(
            factory or tff.aggregators.UnweightedMeanFactory())
    aggregator = factory.create(weights_type.trainable, tff.TensorType(np.float32))
    finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
        _server(config), weights_type)
    return FedAvgParts(initial_weights, work, aggregator, finalizer)


def unflatten(template, arrays: list[np.ndarray]):
    """A state of `template`'s structure holding a checkpoint's flat `arrays`, or None
    when they do not fit it (another model or algorithm)."""
    flat = tf.nest.flatten(template)
    if len(flat) != len(arrays) or any(
            np.shape(a) != np.shape(b) for a, b in zip(flat, arrays, strict=True)):
        return None
    return tf.nest.pack_sequence_as(template, arrays)


def compose(parts: FedAvgParts) -> tff.learning.templates.LearningProcess:
    """The learning process of `parts`: broadcast, client work, aggregation,
    server step, as TFF composes its own algorithms."""
    weights_type = parts.initial_weights.type_signature.result
    return tff.learning.templates.compose_learning_process(
        parts.initial_weights, tff.learning.templates.build_broadcast_process(weights_type),
        parts.client_work, parts.aggregator, parts.finalizer)


def build(config: ExperimentConfig, task: Task, population: int = 0):
    """The learning process the config describes, ready for initialize/next.

    FedAvg (weighted or not) and FedProx are composed, as TFF composes them,
    from a broadcast, `experiments.algorithms.client_work` (TFF's client work with a
    faster step), the configured aggregator and the server optimizer; FedSGD
    and Mime-Lite are TFF's; SCAFFOLD (`experiments.algorithms.scaffold`,
    stateful clients) needs the number of training clients, `population`;
    `--local_layers` makes FedAvg keep the last layers on the clients
    (`experiments.algorithms.local_layers`).
    """
    if config.local_layers > 0:
        weighting = (tff.learning.ClientWeighting.UNIFORM
                     if config.algorithm == "fedavg_unweighted"
                     else tff.learning.ClientWeighting.NUM_EXAMPLES)
        return local_layers.LocalLayersProcess(
            task, config.seed, config.client_learning_rate, config.server_learning_rate,
            weighting, config.local_layers)
    if config.algorithm == "scaffold":
        return scaffold.ScaffoldProcess(task, config.seed, config.client_learning_rate,
                                        config.server_learning_rate, population)
    if config.algorithm == "mime_lite":
        return _mime_lite(config, task)
    if config.algorithm == "fedsgd":
        return tff.learning.algorithms.build_fed_sgd(
            model_fn_for(task, config.seed), server_optimizer_fn=_server(config),
            model_aggregator=_aggregator(config, _weight_specs(task, config.seed)))
    if config.algorithm not in ("fedavg", "fedavg_unweighted", "fedprox"):
        raise ValueError(f"{config.algorithm} is not a federated algorithm")
    return compose(fedavg_parts(config, task, population))


def _mime_lite(config: ExperimentConfig, task: Task) -> tff.learning.templates.LearningProcess:
    """Mime-Lite (Karimireddy et al. 2021) by TFF's own builder, which matches a numpy
    Mime-Lite (mime_lite_test.py): clients step with the --server_optimizer at
    --client_learning_rate using the server's optimizer state, frozen for the round;
    the server updates that state with the clients' mean full-batch gradient at the
    broadcast model and moves the model by SGD at --server_learning_rate."""
    base = server_optimizer.build(dataclasses.replace(
        pick(ServerOptimizerSettings, config), server_learning_rate=config.client_learning_rate))
    return tff.learning.algorithms.build_weighted_mime_lite(
        model_fn_for(task, config.seed), base_optimizer=base,
        server_optimizer=tff.learning.optimizers.build_sgdm(config.server_learning_rate),
        client_weighting=tff.learning.ClientWeighting.NUM_EXAMPLES)


def build_tff_stock(config: ExperimentConfig,
                    task: Task) -> tff.learning.templates.LearningProcess:
    """TFF's own builder for the same FedAvg/FedProx config, with TFF's client
    work: the reference that tests compare `build` with and the benchmark times."""
    model_fn = model_fn_for(task, config.seed)
    client = tff.learning.optimizers.build_sgdm(learning_rate=config.client_learning_rate)
    server = _server(config)
    aggregator = _aggregator(config, _weight_specs(task, config.seed))
    algorithms = tff.learning.algorithms
    if config.algorithm == "fedavg":
        return algorithms.build_weighted_fed_avg(
            model_fn, client_optimizer_fn=client, server_optimizer_fn=server,
            model_aggregator=aggregator)
    if config.algorithm == "fedavg_unweighted":
        return algorithms.build_unweighted_fed_avg(
            model_fn, client_optimizer_fn=client, server_optimizer_fn=server,
            model_aggregator=aggregator)
    if config.algorithm == "fedprox":
        return algorithms.build_weighted_fed_prox(
            model_fn, proximal_strength=config.proximal_strength,
            client_optimizer_fn=client, server_optimizer_fn=server,
            model_aggregator=aggregator)
    raise ValueError(f"TFF has no stock builder here for {config.algorithm}")

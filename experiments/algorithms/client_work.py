"""Local SGD on each client, the client work of FedAvg and FedProx.

TFF's own client work (`build_model_delta_client_work`) runs every batch
through its Keras wrapper's `forward_pass` (a `tf.function` calling another,
not inlined in TFF's worker, which runs graphs without Grappler), a functional
optimizer and a second evaluation of the loss for its loss metric; on two
cores that trains a round's examples ~1.3x slower than the compiled
centralised loop. This one does the same computation with a bare step: one
`dataset.reduce` of the Keras model, the loss, its gradient and an in-place
`assign_sub`. Everything a caller can see is TFF's: the state (the client
optimizer's hyperparameters, or nothing for FedProx), the client result (the
model delta, zeroed with weight 0 if not finite; weighted by examples or
uniformly) and the measurements (`{"train": ...}`: the task's metrics, loss,
examples and batches in TFF's unfinalized layout, summed over clients, then
finalised by TFF's finalizers). Tests check rounds and metrics equal TFF's to
float precision; FedProx's proximal gradient is mu (v - v_global), the
gradient of mu/2 ||v - v_global||^2 (TFF 0.87's own has the opposite sign).
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import tensorflow as tf
import tensorflow_federated as tff

from tasks.task import Task


def local_training(task: Task, seed: int, weighting: tff.learning.ClientWeighting,
                   proximal_strength: float, metric_names: list[str]):
    """The client's training as a `tf.function(learning_rate, initial, dataset,
    correction=None)`; a `correction` (one tensor per trainable variable, e.g.
    SCAFFOLD's c - c_i) is added to every step's gradient.

    Per batch it runs the Keras model and loss directly: TFF's
    `forward_pass` is a `tf.function` calling another, and TFF's worker runs
    graphs without Grappler, so those nested calls are not inlined and cost
    each batch. Loss, example and batch counts ride in the reduce state; the
    task's own Keras metrics are updated in place. The unfinalized metrics
    come out in TFF's layout (`metric_names`' order), so TFF's finalizers apply.
    """
    model = task.build_model(seed)
    loss_fn = task.loss()
    metrics = task.metrics()
    trainable = model.trainable_variables
    non_trainable = model.non_trainable_variables

    # A tf.function orders the stateful ops (assign, train, read) as written.
    @tf.function
    def train(learning_rate, initial, dataset, correction=None):
        for v, value in zip(trainable, initial.trainable, strict=True):
            v.assign(value)
        for v, value in zip(non_trainable, initial.non_trainable, strict=True):
            v.assign(value)
        for metric in metrics:
            metric.reset_state()
        start = list(initial.trainable)

        def step(totals, batch):
            examples, batches, loss_total = totals
            x, y = batch
            with tf.GradientTape() as tape:
                predictions = model(x, training=True)
                loss = loss_fn(y, predictions)
                objective = tf.add_n([loss] + model.losses) if model.losses else loss
            grads = tape.gradient(objective, trainable)
            for k, (v, g, v0) in enumerate(zip(trainable, grads, start, strict=True)):
                if proximal_strength > 0.0:  # gradient of mu/2 ||v - v0||^2
                    g = g + proximal_strength * (v - v0)
                if correction is not None:
                    g = g + correction[k]
                v.assign_sub(learning_rate * g)
            for metric in metrics:
                metric.update_state(y, predictions)
            size = tf.shape(predictions)[0]
            return (examples + tf.cast(size, tf.int64), batches + 1,
                    loss_total + loss * tf.cast(size, tf.float32))

        examples, batches, loss_total = dataset.reduce(
            (tf.constant(0, tf.int64), tf.constant(0, tf.int64), tf.constant(0.0)), step)
        delta = [v0 - v for v0, v in zip(start, trainable, strict=True)]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(d)) for d in delta])
        delta = [tf.where(finite, d, tf.zeros_like(d)) for d in delta]
        if weighting == tff.learning.ClientWeighting.NUM_EXAMPLES:
            weight = tf.cast(examples, tf.float32)
        else:
            weight = tf.constant(1.0, tf.float32)
        weight = tf.where(finite, weight, 0.0)
        # As TFF does: a client whose update is not finite reports no metrics.
        keep = tf.cast(finite, tf.int64)
        own = {m.name: [tf.where(finite, v, tf.zeros_like(v)) for v in m.variables]
               for m in metrics}
        own["loss"] = [tf.where(finite, loss_total, 0.0),
                       tf.cast(examples * keep, tf.float32)]
        own["num_examples"] = [examples * keep]
        own["num_batches"] = [batches * keep]
        return delta, weight, [own[name] for name in metric_names]

    return train


def restore_eager_keras(task: Task, seed: int) -> None:
    """Puts Keras's model classes back in their eager (v2) form.

    Keras swaps the base classes of `Sequential` and its kin to their v1
    versions whenever a model is built inside a `tf.Graph` (as above, and as
    TFF traces the client computation), and back when one is built eagerly.
    Until then every model built eagerly before (the benchmark's centralised
    loop, any caller's own model) fails with "Your Layer or Model is in an
    invalid state". Building one model eagerly leaves Keras as we found it.
    """
    task.build_model(seed)


class ModelTypes(NamedTuple):
    """What a client computation over the task's model is typed and finalised with."""

    metric_names: list[str]  # TFF's unfinalized metrics, in its order
    aggregate_metrics: tff.Computation  # sum over clients, then TFF's finalizers
    weights: tff.Type  # ModelWeights
    data: tff.Type  # a client's dataset


def model_types(task: Task, seed: int) -> ModelTypes:
    """The task's model as TFF sees it (built in a graph, as TFF traces it)."""
    with tf.Graph().as_default():
        model = tff.learning.models.from_keras_model(
            task.build_model(seed), loss=task.loss(), input_spec=task.input_spec(),
            metrics=task.metrics())
        finalizers = model.metric_finalizers()
        types = ModelTypes(list(finalizers),
                           tff.learning.metrics.sum_then_finalize(finalizers),
                           tff.learning.models.weights_type_from_model(model),
                           tff.SequenceType(tff.types.tensorflow_to_type(model.input_spec)))
    restore_eager_keras(task, seed)
    return types


def build(task: Task, seed: int, learning_rate: float,
          weighting: tff.learning.ClientWeighting,
          proximal_strength: float = 0.0) -> tff.learning.templates.ClientWorkProcess:
    """FedAvg's client work (FedProx's when `proximal_strength` > 0) for `task`'s
    model: local SGD at `learning_rate` from the broadcast model, returning the
    model delta, with the train metrics TFF's `from_keras_model` would report."""
    types = model_types(task, seed)
    aggregate_metrics, weights_type, data_type = (types.aggregate_metrics, types.weights,
                                                  types.data)
    metric_names = types.metric_names
    # FedAvg's state is the client optimizer's hyperparameters (TFF's layout, so
    # set_hparams can change the learning rate); FedProx's is empty, as in TFF.
    fedprox = proximal_strength > 0.0
    initial_state = () if fedprox else {"learning_rate": float(learning_rate)}

    @tff.federated_computation()
    def init_fn():
        return tff.federated_value(initial_state, tff.SERVER)

    state_type = init_fn.type_signature.result.member

    @tff.tensorflow.computation(state_type, weights_type, data_type)
    def client_update(state, initial, dataset):
        rate = tf.constant(learning_rate, tf.float32) if fedprox else state["learning_rate"]
        train = local_training(task, seed, weighting, proximal_strength, metric_names)
        delta, weight, values = train(rate, initial, dataset)
        return (tff.learning.templates.ClientResult(update=delta, update_weight=weight),
                collections.OrderedDict(zip(metric_names, values, strict=True)))

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(weights_type, tff.CLIENTS),
                               tff.FederatedType(data_type, tff.CLIENTS))
    def next_fn(state, weights, data):
        result, metrics = tff.federated_map(
            client_update, (tff.federated_broadcast(state), weights, data))
        measurements = tff.federated_zip({"train": aggregate_metrics(metrics)})
        return tff.templates.MeasuredProcessOutput(state, result, measurements)

    restore_eager_keras(task, seed)
    if fedprox:
        return tff.learning.templates.ClientWorkProcess(init_fn, next_fn)

    @tff.tensorflow.computation(state_type)
    def get_hparams_fn(state):
        return state

    @tff.tensorflow.computation(state_type, state_type)
    def set_hparams_fn(state, hparams):
        del state
        return hparams

    return tff.learning.templates.ClientWorkProcess(
        init_fn, next_fn, get_hparams_fn=get_hparams_fn, set_hparams_fn=set_hparams_fn)


def clients_round(task: Task, seed: int, learning_rate: float,
                  weighting: tff.learning.ClientWeighting, corrected: bool = False
                  ) -> tff.Computation:
    """A round's local training in one TFF call, for algorithms that act on each
    client's result in Python (SCAFFOLD, local layers): per client (its starting
    model[, its gradient correction], its data) -> (start - trained, weight (0 if not
    finite), steps taken), and the round's train metrics summed and finalised."""
    types = model_types(task, seed)
    names = types.metric_names

    def local(initial, dataset, correction=None):
        train = local_training(task, seed, weighting, 0.0, names)
        delta, weight, values = train(tf.constant(learning_rate, tf.float32), initial,
                                      dataset, correction)
        metrics = collections.OrderedDict(zip(names, values, strict=True))
        return (delta, weight, metrics["num_batches"][0]), metrics

    if corrected:
        client_update = tff.tensorflow.computation(
            lambda initial, correction, dataset: local(initial, dataset, list(correction)),
            types.weights, types.weights.trainable, types.data)
        inputs = (tff.FederatedType(types.weights, tff.CLIENTS),
                  tff.FederatedType(types.weights.trainable, tff.CLIENTS),
                  tff.FederatedType(types.data, tff.CLIENTS))
    else:
        client_update = tff.tensorflow.computation(
            lambda initial, dataset: local(initial, dataset), types.weights, types.data)
        inputs = (tff.FederatedType(types.weights, tff.CLIENTS),
                  tff.FederatedType(types.data, tff.CLIENTS))

    def finish(per_client):
        results, metrics = per_client
        return results, types.aggregate_metrics(metrics)

    if corrected:
        round_fn = tff.federated_computation(
            lambda weights, corrections, data: finish(tff.federated_map(
                client_update, (weights, corrections, data))), *inputs)
    else:
        round_fn = tff.federated_computation(
            lambda weights, data: finish(tff.federated_map(client_update, (weights, data))),
            *inputs)

    restore_eager_keras(task, seed)
    return round_fn

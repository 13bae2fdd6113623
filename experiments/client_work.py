"""Local SGD on each client, the client work of FedAvg and FedProx.

TFF's own client work (`build_model_delta_client_work`) runs every batch
through a functional optimizer and nested-structure copies of the weights; on
two cores that trains a round's examples ~1.4x slower than the compiled
centralised loop. This one does the same computation with a bare step: one
`dataset.reduce` of the model's forward pass, its gradient and an in-place
`assign_sub`. Everything a caller can see is TFF's: the state (the client
optimizer's hyperparameters, or nothing for FedProx), the client result (the
model delta, zeroed with weight 0 if not finite; weighted by examples or
uniformly) and the measurements (`{"train": ...}` from the model's own
metrics, summed over clients, then finalised). Tests check rounds and metrics
equal TFF's to float precision.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
import tensorflow_federated as tff


def _local_training(model_fn: Callable[[], tff.learning.models.VariableModel],
                    weighting: tff.learning.ClientWeighting,
                    proximal_strength: float) -> Callable:
    """The client's training as a `tf.function(learning_rate, initial, dataset)`."""
    model = model_fn()
    weights = tff.learning.models.ModelWeights.from_model(model)
    variables = list(weights.trainable)

    # A tf.function orders the stateful ops (assign, train, read) as written.
    @tf.function
    def train(learning_rate, initial, dataset):
        tf.nest.map_structure(lambda v, value: v.assign(value), weights, initial)
        start = list(initial.trainable)

        def step(examples, batch):
            with tf.GradientTape() as tape:
                output = model.forward_pass(batch, training=True)
            grads = tape.gradient(output.loss, variables)
            for v, g, v0 in zip(variables, grads, start, strict=True):
                if proximal_strength > 0.0:
                    g = g + proximal_strength * (v - v0)
                v.assign_sub(learning_rate * g)
            return examples + tf.cast(output.num_examples, tf.int64)

        examples = dataset.reduce(tf.constant(0, tf.int64), step)
        delta = [v0 - v for v0, v in zip(start, variables, strict=True)]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(d)) for d in delta])
        delta = [tf.where(finite, d, tf.zeros_like(d)) for d in delta]
        if weighting == tff.learning.ClientWeighting.NUM_EXAMPLES:
            weight = tf.cast(examples, tf.float32)
        else:
            weight = tf.constant(1.0, tf.float32)
        weight = tf.where(finite, weight, 0.0)
        if not finite:
            model.reset_metrics()
        return delta, weight, model.report_local_unfinalized_metrics()

    return train


def build(model_fn: Callable[[], tff.learning.models.VariableModel],
          learning_rate: float, weighting: tff.learning.ClientWeighting,
          proximal_strength: float = 0.0) -> tff.learning.templates.ClientWorkProcess:
    """FedAvg's client work (FedProx's when `proximal_strength` > 0): local SGD at
    `learning_rate` from the broadcast model, returning the model delta."""
    with tf.Graph().as_default():
        model = model_fn()
        aggregate_metrics = tff.learning.metrics.sum_then_finalize(model.metric_finalizers())
        weights_type = tff.learning.models.weights_type_from_model(model)
        data_type = tff.SequenceType(tff.types.tensorflow_to_type(model.input_spec))
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
        train = _local_training(model_fn, weighting, proximal_strength)
        delta, weight, metrics = train(rate, initial, dataset)
        return tff.learning.templates.ClientResult(update=delta, update_weight=weight), metrics

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(weights_type, tff.CLIENTS),
                               tff.FederatedType(data_type, tff.CLIENTS))
    def next_fn(state, weights, data):
        result, metrics = tff.federated_map(
            client_update, (tff.federated_broadcast(state), weights, data))
        measurements = tff.federated_zip({"train": aggregate_metrics(metrics)})
        return tff.templates.MeasuredProcessOutput(state, result, measurements)

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

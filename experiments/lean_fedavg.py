"""A lean weighted FedAvg, composed from TFF's templates around a bare client step.

TFF's `build_weighted_fed_avg` runs every batch through its Keras-model adapter
(metrics, the functional optimizer, weight copies, non-finite checks). On two
cores that client step trains a round's examples ~1.4x slower than one
`dataset.reduce` of forward pass, gradient and `assign_sub`. This module builds
the same algorithm (broadcast, local SGD, example-weighted mean of the model
deltas, server SGD) with that bare step, so the benchmark can measure what the
adapter costs. It reports no train metrics and takes no custom aggregator
(DP, compression, robust, secure), so training does not use it yet.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tasks.task import Task


def _client_update_fn(task: Task, seed: int, weights_type, data_type, learning_rate: float):
    """The TF computation of one client: local SGD from the broadcast weights."""

    @tff.tensorflow.computation(weights_type, data_type)
    def client_update(initial, dataset):
        model = task.build_model(seed)
        loss_fn = task.loss()
        variables = model.trainable_variables

        # A tf.function orders the stateful ops (assign, train, read) as written.
        @tf.function
        def train(initial, dataset):
            for variable, value in zip(variables, initial.trainable, strict=True):
                variable.assign(value)

            def step(examples, batch):
                x, y = batch
                with tf.GradientTape() as tape:
                    loss = loss_fn(y, model(x, training=True))
                grads = tape.gradient(loss, variables)
                for v, g in zip(variables, grads, strict=True):
                    v.assign_sub(learning_rate * g)
                return examples + tf.cast(tf.shape(y)[0], tf.int64)

            examples = dataset.reduce(tf.constant(0, tf.int64), step)
            delta = [w - v for w, v in zip(initial.trainable, variables, strict=True)]
            return delta, examples

        delta, examples = train(initial, dataset)
        return tff.learning.templates.ClientResult(
            update=delta, update_weight=tf.cast(examples, tf.float32))

    return client_update


def build(task: Task, seed: int, client_learning_rate: float,
          server_learning_rate: float) -> tff.learning.templates.LearningProcess:
    """Weighted FedAvg of `task`'s model (seeded initial weights), lean client step."""
    keras_model = task.build_model(seed)
    trainable = [w.numpy() for w in keras_model.trainable_weights]
    non_trainable = [w.numpy() for w in keras_model.non_trainable_weights]

    @tff.tensorflow.computation()
    def initial_weights():
        return tff.learning.models.ModelWeights(
            trainable=[tf.constant(w) for w in trainable],
            non_trainable=[tf.constant(w) for w in non_trainable])

    weights_type = initial_weights.type_signature.result
    data_type = tff.SequenceType(tff.types.tensorflow_to_type(task.input_spec()))
    client_update = _client_update_fn(task, seed, weights_type, data_type,
                                      client_learning_rate)

    @tff.federated_computation()
    def init_fn():
        return tff.federated_value((), tff.SERVER)

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(weights_type, tff.CLIENTS),
                               tff.FederatedType(data_type, tff.CLIENTS))
    def next_fn(state, weights, data):
        result = tff.federated_map(client_update, (weights, data))
        return tff.templates.MeasuredProcessOutput(
            state, result, tff.federated_value((), tff.SERVER))

    client_work = tff.learning.templates.ClientWorkProcess(init_fn, next_fn)
    aggregator = tff.aggregators.MeanFactory().create(
        client_update.type_signature.result.update, tff.TensorType(np.float32))
    finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
        tff.learning.optimizers.build_sgdm(learning_rate=server_learning_rate), weights_type)
    distributor = tff.learning.templates.build_broadcast_process(weights_type)
    return tff.learning.templates.compose_learning_process(
        initial_weights, distributor, client_work, aggregator, finalizer)

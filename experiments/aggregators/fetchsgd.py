"""FetchSGD (Rothchild et al. 2020, Algorithm 1): sketched uploads, unsketched by the server.

`--compression=fetchsgd`. Each client sends, per tensor of its (weighted)
update, an R x C count sketch (experiments.aggregators.sketch) under hashes
that every client shares. The sketch is linear, so the server only needs the
SUM of the tables (what a secure sum would reveal; the project's secure sums
do not carry sketches, so it is refused with them). Per tensor the server then

    S = sum of the clients' tables + E           (E: its error sketch)
    output = top-k of the median estimates of S  (k = max(1, ceil(F n)))
    E <- S - sketch(output)

and returns `output` (dense-shaped, k non-zeros per tensor) as the sum. What
the top-k leaves out stays in E and is sent in a later round (FetchSGD's error
accumulation in sketch space), so the outputs over rounds track the inputs.

Choices, and where this departs from the paper:

* Hashes: drawn from the experiment seed (and the tensor's index) only, the
  same for every client AND every round, as FetchSGD's one sketch operator.
  E is a table under those hashes; adding it to the next round's table is
  only meaningful if that table uses the same hashes (under per-round hashes
  E's values would land in the wrong buckets with the wrong signs: noise, not
  feedback; the tests show that error accumulation then fails). So no seed
  travels up and nothing is broadcast down: the aggregator's state is the
  error sketches alone, checkpointed with the run.
* Exact values: the paper's optional second round trip (clients send the
  exact values of the k chosen coordinates) is not done; the estimates are
  used, and their error stays in E.
* Momentum: FetchSGD's momentum sketch (rho S_u + S before the top-k) is not
  implemented; `--server_optimizer=sgdm` applies momentum to the unsketched
  update instead (after the top-k, not before).
* Top-k per tensor (k of each tensor's n), not over the flattened model.
* Scale under the mean: chain.py wraps this sum factory in TFF's MeanFactory
  (or UnweightedMeanFactory), which weights each update before it is sketched
  and divides the output sum by the round's total weight W_t. E is therefore
  kept in the units of the summed weighted updates: mass the top-k defers
  from round t is divided by W_{t+1} instead of W_t when it is sent. With
  `fedavg_unweighted` and a fixed cohort (W = K every round) that is exact;
  with example weighting (or a varying cohort) the deferred mass is rescaled
  by W_t / W_{t+1}. Unsketching the mean instead (dividing the summed table by
  W_t before adding E) would need its own weighted factory in place of TFF's
  MeanFactory, which is the only place that sees the weights; it is not done.

Bits: R C float32 per tensor, counted from the payload by
`compression.payload_bits` (measurements `compression_bits_up` and
`compression_clients`, as `CompressedSumFactory`), equal to
`compression.expected_bits`. Cost: the hashes (R n bucket indices and signs
per tensor) are regenerated from the seed on every client and on the server.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from experiments.aggregators import compression, sketch

_PURPOSE = 0xF5  # separates the sketch's hash seeds from other uses of --seed


def hash_seed(experiment_seed: int, index: int) -> tf.Tensor:
    """The stateless seed of the hashes of tensor `index`: the experiment seed only."""
    base = tf.constant([experiment_seed, _PURPOSE], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, index)


def tensor_hashes(method: compression.Method, n: int, index: int, experiment_seed: int
                  ) -> tuple[tf.Tensor, tf.Tensor, int]:
    """Buckets [R, n], signs [R, n] and the width C of tensor `index`'s sketch."""
    width = sketch.columns(n, method.sketch_columns_fraction)
    buckets, signs = sketch.hashes(n, method.sketch_rows, width,
                                   hash_seed(experiment_seed, index))
    return buckets, signs, width


def encode(method: compression.Method, tensors: list[tf.Tensor], experiment_seed: int
           ) -> collections.OrderedDict:
    """A client's payload: one R x C table per tensor, and no seed."""
    fields = []
    for i, x in enumerate(tensors):
        flat = tf.reshape(x, [-1])
        buckets, signs, width = tensor_hashes(method, flat.shape[0], i, experiment_seed)
        fields.append({"table": sketch.sketch(flat, buckets, signs, width)})
    return collections.OrderedDict(tensors=fields, seed=tf.zeros([0], tf.int32))


def _carried(table: tf.Tensor, sent: tf.Tensor) -> tf.Tensor:
    """The new error sketch: what the output did not take of S."""
    return table - sent


def unsketch(method: compression.Method, summed: list[tf.Tensor], error: list[tf.Tensor],
             shapes: list[tuple[int, ...]], experiment_seed: int
             ) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
    """The server's step: the outputs (shaped as the tensors) and the new error sketches."""
    outputs, carried = [], []
    for i, (table, kept, shape) in enumerate(zip(summed, error, shapes, strict=True)):
        n = int(np.prod(shape))
        buckets, signs, width = tensor_hashes(method, n, i, experiment_seed)
        s = table + kept
        out = sketch.unsketch(s, buckets, signs, sketch.top_k(n, method.topk_fraction))
        carried.append(_carried(s, sketch.sketch(out, buckets, signs, width)))
        outputs.append(tf.reshape(out, shape))
    return outputs, carried


class FetchSgdSumFactory(tff.aggregators.UnweightedAggregationFactory):
    """The unsketched sum of the clients' count sketches, with the server's error sketch.

    State: one float32 [R, C] error sketch per tensor (zeros at first). Result:
    the top-k of the unsketched estimates, dense-shaped. Measurements:
    `compression_bits_up` (payload bits summed over clients) and
    `compression_clients` (payloads summed).
    """

    def __init__(self, method: compression.Method, experiment_seed: int = 0):
        if method.name != "fetchsgd":
            raise ValueError(f"FetchSgdSumFactory has no method {method.name}")
        self._method = method
        self._seed = experiment_seed

    def create(self, value_type) -> tff.templates.AggregationProcess:
        method, experiment_seed = self._method, self._seed
        specs = tff.types.type_to_tf_tensor_specs(value_type)
        shapes = [tuple(s.shape.as_list()) for s in tf.nest.flatten(specs)]
        widths = [sketch.columns(int(np.prod(s)), method.sketch_columns_fraction)
                  for s in shapes]

        @tff.tensorflow.computation()
        def zeros():
            return [tf.zeros([method.sketch_rows, w], tf.float32) for w in widths]

        @tff.tensorflow.computation(value_type)
        def encode_fn(value):
            payload = encode(method, tf.nest.flatten(value), experiment_seed)
            tables = [fields["table"] for fields in payload["tensors"]]
            return tables, compression.payload_bits(method, payload, shapes)

        tables_type = zeros.type_signature.result

        @tff.tensorflow.computation(tables_type, tables_type)
        def unsketch_fn(summed, error):
            outputs, carried = unsketch(method, list(summed), list(error), shapes,
                                        experiment_seed)
            return tf.nest.pack_sequence_as(specs, outputs), carried

        @tff.tensorflow.computation()
        def one():
            return tf.constant(1, tf.int32)

        @tff.federated_computation()
        def init_fn():
            return tff.federated_eval(zeros, tff.SERVER)

        @tff.federated_computation(init_fn.type_signature.result,
                                   tff.FederatedType(value_type, tff.CLIENTS))
        def next_fn(state, value):
            encoded = tff.federated_map(encode_fn, value)
            summed = tff.federated_sum(encoded[0])
            step = tff.federated_map(unsketch_fn, (summed, state))
            clients = tff.federated_sum(tff.federated_eval(one, tff.CLIENTS))
            measurements = tff.federated_zip(collections.OrderedDict([
                (compression.BITS_KEY, tff.federated_sum(encoded[1])),
                (compression.CLIENTS_KEY, clients)]))
            return tff.templates.MeasuredProcessOutput(
                state=step[1], result=step[0], measurements=measurements)

        return tff.templates.AggregationProcess(init_fn, next_fn)

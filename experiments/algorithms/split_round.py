"""A federated round in three TFF calls, so Python can act on each client's update.

TFF runs a learning process's round as one computation: client work, model
aggregation and the server update happen inside it, and no Python sees a
single client's update. Two features need exactly that:

- `--aggregator=secure_sum`: each update is quantised to integers and summed
  by the simulated Bonawitz et al. protocol (experiments.aggregators.secure_sum),
  with dropouts after masking and the round's cost;
- `--outlier_kind=scaled_random`: outlier clients replace their update;
- `--error_feedback`: each client adds the residual its compressed uploads lost
  (experiments.algorithms.error_feedback), state that stays on the client.

`SplitProcess` therefore runs the same three pieces the composed FedAvg
process is built from (`experiments.algorithms.builder.fedavg_parts`: the client work,
the configured model aggregator, the apply-optimizer finalizer) as separate
calls and keeps the composed process's state layout, so checkpoints, weights
and metrics are those of `experiments.algorithms.builder.build` (a test checks the rounds
agree). Everything else (initialize, get/set weights) is the composed
process's, composed from the same parts.
"""

from __future__ import annotations

import secrets

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from experiments.aggregators import compression
from experiments.aggregators import secure_sum as secagg
from experiments.aggregators.settings import CompressionSettings
from experiments.algorithms import builder, error_feedback
from experiments.config import ExperimentConfig
from experiments.core.settings import pick
from experiments.privacy import discrete_gaussian
from experiments.privacy.settings import DpSettings
from experiments.simulation.outliers import Outliers
from tasks.task import Task

_STREAM = 0x5EC


class SplitProcess:
    """FedAvg (weighted or not) with a Python step between client work and aggregation."""

    takes_clients = True  # next() needs the round's global client indices

    def __init__(self, parts: builder.FedAvgParts, config: ExperimentConfig,
                 outliers: Outliers):
        self._composed = builder.compose(parts)
        self._config = config
        self._outliers = outliers
        self._client_work, self._aggregator = parts.client_work, parts.aggregator
        self._finalizer = parts.finalizer
        # The clients' DP noise and rounding draw from the OS's entropy, never from
        # --seed (hparams.json records it: anyone could regenerate and remove the noise).
        self._noise_entropy = secrets.randbits(63)
        shapes = [tuple(t.shape) for t in
                  parts.initial_weights.type_signature.result.trainable]
        self._feedback = (error_feedback.ErrorFeedback(
            compression.Method.of(pick(CompressionSettings, config)), shapes, config.seed)
            if config.error_feedback else None)

    # The clients' residuals under --error_feedback (the trainer checks their memory).
    client_state_name = "error-feedback residuals"

    @property
    def client_state_bytes(self) -> int:
        """Bytes each client keeps (0 without error feedback)."""
        return self._feedback.states.bytes_per_client if self._feedback else 0

    def to_arrays(self, state) -> list[np.ndarray]:
        """The server state's arrays, then the clients' residuals (checkpoints)."""
        saved = [np.asarray(x) for x in tf.nest.flatten(state)]
        return saved + (self._feedback.states.to_arrays() if self._feedback else [])

    def from_arrays(self, arrays: list[np.ndarray]):
        """Inverse of to_arrays; None when the arrays do not fit this process."""
        if self._feedback is not None:
            parts = self._feedback.states.saved_arrays
            self._feedback.states = self._feedback.states.from_arrays(arrays[-parts:])
            arrays = arrays[:-parts]
        return builder.unflatten(self.initialize(), arrays)

    # The composed process's own entry points.
    def initialize(self):
        return self._composed.initialize()

    def get_model_weights(self, state):
        return self._composed.get_model_weights(state)

    def set_model_weights(self, state, weights):
        return self._composed.set_model_weights(state, weights)

    def next(self, state, datasets: list, clients, round_num: int):
        """One round over `datasets` of the global client indices `clients`."""
        if not datasets:  # nothing to split (an empty Poisson round under central DP)
            return self._composed.next(state, datasets)
        weights = state.global_model_weights
        work = self._client_work.next(state.client_work, [weights] * len(datasets), datasets)
        updates = [list(r.update) for r in work.result]
        update_weights = [np.float32(r.update_weight) for r in work.result]
        updates = self._outliers.corrupt_updates(updates, clients, round_num)
        metrics = {"client_work": work.measurements}
        if self._config.aggregator == "secure_sum":
            aggregate, metrics["secagg"] = self._secure_mean(updates, round_num)
            aggregator_state = state.aggregator
        elif self._feedback is not None:
            aggregate, metrics["aggregator"] = self._feedback.mean(
                updates, update_weights, clients, round_num)
            aggregator_state = state.aggregator
        else:
            out = self._aggregator.next(state.aggregator, updates, update_weights)
            aggregate, aggregator_state = out.result, out.state
            metrics["aggregator"] = out.measurements
        final = self._finalizer.next(state.finalizer, weights, aggregate)
        metrics["finalizer"] = final.measurements
        new_state = tff.learning.templates.LearningAlgorithmState(
            global_model_weights=final.result, distributor=state.distributor,
            client_work=work.state, aggregator=aggregator_state, finalizer=final.state)
        return tff.learning.templates.LearningProcessOutput(new_state, metrics)

    def _secure_mean(self, updates: list, round_num: int) -> tuple[list, dict]:
        """Encode, run the protocol (with dropouts), decode the survivors' mean.

        Without DP each update is clipped per coordinate and quantised (the field
        widened so that the sum never wraps); with --dp=distributed each client adds
        its discrete Gaussian share (experiments.privacy.discrete_gaussian).
        """
        cfg = self._config
        n = len(updates)
        shapes = [np.shape(u) for u in updates[0]]
        flats = [np.concatenate([np.ravel(u) for u in update]) for update in updates]
        rng = np.random.default_rng([cfg.seed, _STREAM, round_num])
        dropped = sorted(int(d) for d in rng.choice(
            n, size=secagg.dropped_count(cfg.secagg_dropout, n), replace=False))
        threshold = secagg.threshold_count(cfg.secagg_threshold, n)
        seed = cfg.seed * 1_000_003 + round_num
        if cfg.dp == "distributed":
            total, outcome, extra = self._distributed_sum(flats, round_num, dropped,
                                                          threshold, seed)
        else:
            total, outcome, extra = self._quantised_sum(flats, round_num, dropped,
                                                        threshold, seed)
        mean = (total / len(outcome.included)).astype(np.float32)
        parts = np.split(mean, np.cumsum([int(np.prod(s)) for s in shapes])[:-1])
        upload = outcome.cost.mean_upload_bits()
        return [p.reshape(s) for p, s in zip(parts, shapes, strict=True)], {
            "secagg_survivors": len(outcome.included),
            "secagg_bits_up_per_client": upload,
            "secagg_extra_bits_up_per_client": upload - secagg.float_upload_bits(mean.size),
            "secagg_messages": outcome.cost.messages, **extra,
        }

    def _quantised_sum(self, flats: list, round_num: int, dropped: list, threshold: int,
                       seed: int) -> tuple[np.ndarray, secagg.Outcome, dict]:
        """The decoded sum of the surviving clients' quantised updates (no DP)."""
        cfg = self._config
        inputs = [secagg.quantise(flat, cfg.secagg_bits, cfg.secagg_range,
                                  np.random.default_rng([cfg.seed, _STREAM, round_num, k]))
                  for k, flat in enumerate(flats)]
        outcome = secagg.run(inputs, cfg.secagg_bits, threshold, seed=seed,
                             drop_before_input=dropped)
        return secagg.dequantise(outcome.total, cfg.secagg_bits, cfg.secagg_range), outcome, {}

    def _distributed_sum(self, flats: list, round_num: int, dropped: list, threshold: int,
                         seed: int) -> tuple[np.ndarray, secagg.Outcome, dict]:
        """The decoded sum of the surviving clients' discrete-Gaussian encodings, and
        the fraction of coordinates whose noisy sum wrapped around the b-bit field."""
        cfg = self._config
        encoding = discrete_gaussian.encoding_of(pick(DpSettings, cfg), cfg.clients_per_round,
                                                 flats[0].size)
        diagonal = discrete_gaussian.signs((cfg.seed, _STREAM, round_num, 1), encoding.padded)
        inputs, unwrapped = [], []
        for k, flat in enumerate(flats):
            rng = np.random.default_rng([self._noise_entropy, _STREAM, round_num, k])
            wrapped, noisy = discrete_gaussian.encode(flat, encoding, diagonal, rng)
            inputs.append(wrapped)
            unwrapped.append(noisy)
        outcome = secagg.run(inputs, encoding.bits, threshold, seed=seed,
                             drop_before_input=dropped, modulus=encoding.bits)
        exact = np.sum([unwrapped[u] for u in outcome.included], axis=0)
        wrapped = float(np.mean(discrete_gaussian.wrap(exact, encoding.bits) != exact))
        return discrete_gaussian.decode(outcome.total, encoding, diagonal), outcome, {
            "ddp_wrapped_fraction": wrapped}


def needed(config: ExperimentConfig, outliers: Outliers) -> bool:
    """Whether the config needs Python between client work and aggregation."""
    return (config.aggregator == "secure_sum" or outliers.update_side
            or config.error_feedback)


def build(config: ExperimentConfig, task: Task, outliers: Outliers, population: int):
    """`experiments.algorithms.builder.build`'s process, or a SplitProcess of the same parts
    when the config needs Python between client work and aggregation."""
    if needed(config, outliers):
        return SplitProcess(builder.fedavg_parts(config, task, population), config, outliers)
    return builder.build(config, task, population)


def next_round(learning_process, state, datasets: list, clients, round_num: int):
    """`learning_process.next`, passing clients and round to a process that takes them
    (a SplitProcess, a stateful algorithm's)."""
    if getattr(learning_process, "takes_clients", False):
        return learning_process.next(state, datasets, clients, round_num)
    return learning_process.next(state, datasets)

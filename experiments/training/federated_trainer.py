"""One federated round at a time: sample clients, build their data, run TFF.

Wraps the learning process from `experiments.algorithms.builder` behind the small
interface the loop drives (initial state, one round, weights, checkpoint
arrays), so the centralised baseline can be driven the same way.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from experiments.aggregators import secure_sum, traffic
from experiments.aggregators.settings import CompressionSettings
from experiments.algorithms import builder, client_state, local_layers, split_round
from experiments.config import ExperimentConfig
from experiments.core import resources, stops
from experiments.core.errors import UsageError
from experiments.core.settings import pick
from experiments.privacy import accounting
from experiments.privacy.settings import DpSettings
from experiments.simulation import outliers, participation, population, sampling
from experiments.simulation.settings import OutlierSettings
from experiments.training import ditto
from tasks.task import Task


def _train_metrics(metrics) -> dict:
    """train_loss, train_<metric> for each of the task's metrics, and examples."""
    train = metrics["client_work"]["train"]
    row = {f"train_{name}": float(value) for name, value in train.items()
           if name not in ("num_examples", "num_batches")}
    row["train_examples"] = int(train["num_examples"])
    return row


def _dp_measurements(metrics) -> dict:
    """The adapted clip (used from the next round on), when the DP aggregator reports one."""
    found = {}

    def visit(node) -> None:
        if hasattr(node, "items"):
            for key, value in node.items():
                if key == "dp_clip" or key == "clip":
                    found["dp_clip"] = float(value)
                else:
                    visit(value)

    visit(metrics.get("aggregator", {}))
    return found


def accounting_scope(config: ExperimentConfig, dimension: int) -> dict:
    """What the accounting needs besides the DP flags: --dp=distributed's model size
    and the clients whose noise share reaches each round's sum (the secure sum loses
    --secagg_dropout of the cohort, and their shares); --dp=banded_mf's horizon."""
    k = config.clients_per_round
    lost = (secure_sum.dropped_count(config.secagg_dropout, k)
            if config.aggregator == "secure_sum" else 0)
    return {"dimension": dimension, "shares": k - lost, "rounds": config.total_rounds}


def trainable_parameters(model: tf.keras.Model) -> int:
    """d: the number of trainable parameters, the length of a client's update."""
    return sum(int(np.size(w)) for w in model.trainable_weights)


def client_datasets(task: Task, client_ids: list, chosen, seed: int,
                    round_num: int) -> list:
    """The chosen clients' training data for round `round_num`: the task's
    preprocessing with each client's own seeded shuffle. The one recipe that
    training, the benchmark and the tests share, so they see the same batches."""
    return [task.preprocess_train(task.train_data.create_tf_dataset_for_client(client_ids[i]),
                                  sampling.client_shuffle_seed(seed, round_num, i))
            for i in chosen]


def sampled_client_datasets(task: Task, config: ExperimentConfig, round_num: int,
                            clients_per_round: int | None = None) -> list:
    """Round `round_num`'s client datasets when every training client is
    available (no population model, no non-participants): what a plain
    FedAvg round of `config` trains on."""
    ids = task.train_data.client_ids
    chosen = sampling.select_clients(config.client_sampling, len(ids),
                                     clients_per_round or config.clients_per_round,
                                     config.seed, round_num)
    return client_datasets(task, ids, chosen, config.seed, round_num)


class FederatedTrainer:
    """Drives a TFF learning process round by round."""

    def __init__(self, config: ExperimentConfig, task: Task):
        self._config = config
        self._task = task
        # Non-participants never join; failed clients stop (experiments.simulation.participation).
        self._client_ids = participation.federated_clients(config.non_participants,
                                                          task.train_data.client_ids)
        if config.clients_per_round > len(self._client_ids):
            raise UsageError(
                f"--clients_per_round={config.clients_per_round} exceeds the "
                f"{len(self._client_ids)} training clients of --task={config.task}; "
                f"use at most {len(self._client_ids)}")
        keras_model = task.build_model(config.seed)
        self._mechanism = accounting.mechanism(
            pick(DpSettings, config), config.clients_per_round, config.client_sampling,
            self.population, **accounting_scope(config, trainable_parameters(keras_model)))
        self._participations = np.zeros(self.population, dtype=np.int64)
        self._failed = participation.failed_mask(config.failed_clients, self.population,
                                                   config.seed)
        self._counted_through = 0
        self._initial_weights = tff.learning.models.ModelWeights.from_model(keras_model)
        resources.check_round(
            config.clients_per_round, [task.train_data.num_examples(c) for c in self._client_ids],
            task.config.max_elements_per_client,
            resources.example_bytes(*task.train_data.arrays(self._client_ids[0])),
            sum(w.nbytes for w in keras_model.get_weights()), config.memory_budget_mb)
        # Outlier clients and secure aggregation (experiments.simulation.outliers, .split_round).
        self._outliers = outliers.Outliers(pick(OutlierSettings, config), config.seed,
                                           self.population, int(keras_model.output_shape[-1]))
        self._process = split_round.build(config, task, self._outliers, self.population)
        self._ditto = (ditto.DittoClients(task, config.seed, config.client_learning_rate,
                                          config.ditto_lambda)
                       if config.ditto_lambda > 0 else None)
        self.summary = self._client_state(config)
        self._traffic = traffic.Traffic.for_model(
            config.algorithm, pick(CompressionSettings, config),
            self._initial_weights.trainable, self._initial_weights.non_trainable,
            config.server_optimizer, local_floats=sum(
                int(np.size(keras_model.trainable_weights[k]))
                for k in (local_layers.local_indices(keras_model, config.local_layers)
                          if config.local_layers else [])),
            integers=(self._mechanism.discrete.bits, self._mechanism.discrete.padded)
            if config.dp == "distributed" else None)
        # Eligibility, dropout, stragglers, over-selection (experiments.simulation.population).
        self._population = population.Population(
            pick(population.PopulationSettings, config),
            population.examples_per_round(task, self._client_ids), self._traffic.bits_down,
            self._traffic.bits_up, config.seed, config.client_sampling,
            config.clients_per_round)
        self._cohorts: dict[tuple[int, int], int] = {}

    def _client_state(self, config: ExperimentConfig) -> dict:
        """What the clients keep (SCAFFOLD's control variates, local layers, Ditto's
        personal models): checked against the memory budget, described for hparams."""
        kept = []
        if getattr(self._process, "client_state_bytes", 0):
            what = getattr(self._process, "client_state_name", None) or (
                "local layers" if config.local_layers
                else f"{config.algorithm} control variates")
            kept.append((what, self._process.client_state_bytes))
        if self._ditto is not None:
            kept.append(("Ditto personal models", self._ditto.states.bytes_per_client))
        if not kept:
            return {}
        what = " + ".join(w for w, _ in kept)
        size = sum(b for _, b in kept)
        client_state.check_budget(what, size, self.population, config.memory_budget_mb)
        return client_state.describe(what, size, self.population)

    @property
    def population(self) -> int:
        """Number of training clients."""
        return len(self._client_ids)

    def initial_state(self):
        """Server state with the seeded initial model."""
        state = self._process.initialize()
        return self._process.set_model_weights(state, self._initial_weights)

    def run_round(self, state, round_num: int):
        """Runs round `round_num`; returns the new state and the round's metrics."""
        stops.raise_if_stop_requested()  # a stop swallowed by TF or a GC callback
        cfg = self._config
        chosen, population_row = self._clients(round_num)
        datasets = [self._outliers.corrupt_dataset(dataset, i) for dataset, i in zip(
            client_datasets(self._task, self._client_ids, chosen, cfg.seed, round_num),
            chosen, strict=True)]
        row, aggregator = {"train_examples": 0}, None
        # A Poisson round can select nobody. Central DP still runs the round: the
        # accounted release is the noised sum in every round, and an unchanged
        # model would reveal the empty cohort. Without central noise the model
        # simply stays as it is.
        if datasets and self._ditto is not None:  # on the clients, beside their round
            self._ditto.train(chosen, datasets,
                              self._process.get_model_weights(state).trainable)
        if datasets or cfg.dp in ("fixed", "adaptive", "tree"):
            output = split_round.next_round(self._process, state, datasets, chosen, round_num)
            aggregator = output.metrics.get("aggregator")
            state = output.state
            if datasets:
                row = _train_metrics(output.metrics)
            row.update(_dp_measurements(output.metrics))
            row.update(output.metrics.get("secagg", {}))
        row.update(self._outliers.row(chosen), **population_row)
        row.update(self._traffic.row(aggregator), clients=len(chosen))
        row.update(self._privacy(round_num))
        return state, row

    def _clients(self, round_num: int) -> tuple[np.ndarray, dict]:
        """The round's aggregated clients and population columns; also counts, up to
        this round, participations (clients that reported) and cohorts (for privacy)."""
        cfg = self._config

        def select(r: int) -> population.RoundOutcome:
            return self._population.round(r, lambda chosen: participation.surviving(
                chosen, self._failed, r, cfg.fail_at_round))

        outcome = None
        for r in range(self._counted_through + 1, round_num + 1):  # ends at round_num
            outcome = select(r)
            self._participations[outcome.reported] += 1
            self._cohorts[outcome.cohort] = self._cohorts.get(outcome.cohort, 0) + 1
        self._counted_through = max(self._counted_through, round_num)
        outcome = outcome or select(round_num)
        return outcome.completed, outcome.row()

    def _privacy(self, round_num: int) -> dict:
        """epsilon after this round (PLD, and tree's RDP, on eval rounds only)."""
        if self._mechanism is None:
            return {}
        cfg = self._config
        most = int(self._participations.max())
        eval_round = round_num % cfg.rounds_per_eval == 0 or round_num == cfg.total_rounds
        m = self._mechanism
        # What the epsilon is of: delta, and the population and cohort accounted (a
        # simulated deployment's with --simulated_population).
        row = {"dp_delta": m.delta, "accounted_population": m.population,
               "accounted_cohort": m.clients_per_round}
        # The single-tree analysis is a dynamic programme over all rounds (~7 s at
        # 1,500 rounds), so tree runs are accounted on eval rounds only.
        if eval_round or self._mechanism.kind != "tree":
            row["epsilon_rdp"] = accounting.epsilon_rdp(self._mechanism, round_num, most)
        if (self._population.changes_cohorts and self._mechanism.sampling == "uniform"
                and self._mechanism.kind in ("fixed", "adaptive")):
            # Uniform rounds of k_t of n_t eligible (experiments.simulation.population).
            row["epsilon_rdp"] = accounting.epsilon_rdp_cohorts(self._mechanism, self._cohorts)
        if eval_round:
            row["epsilon_pld"] = accounting.epsilon_pld(self._mechanism, round_num, most)
        return row

    def model_weights(self, state) -> list[np.ndarray]:
        """The global model's weights in Keras order."""
        weights = self._process.get_model_weights(state)
        return [np.asarray(w) for w in list(weights.trainable) + list(weights.non_trainable)]

    def personal_models(self, state) -> dict[str, list[np.ndarray]]:
        """Client id -> the model that client keeps (Ditto's personal model, or the
        shared layers with its own local layers), for the clients that have one."""
        found = self._process.personal_weights(state) if hasattr(
            self._process, "personal_weights") else {}
        if self._ditto is not None:
            non_trainable = list(self._process.get_model_weights(state).non_trainable)
            found = {i: self._ditto.states.get(i) + [np.asarray(w) for w in non_trainable]
                     for i in self._ditto.states.clients()}
        return {self._client_ids[i]: weights for i, weights in found.items()}

    def to_arrays(self, state) -> list[np.ndarray]:
        """The full state (model, optimizer, clients' states) as a flat list of arrays."""
        if hasattr(self._process, "to_arrays"):  # a process with its own layout
            saved = self._process.to_arrays(state)
        else:
            saved = [np.asarray(x) for x in tf.nest.flatten(state)]
        return saved + (self._ditto.states.to_arrays() if self._ditto is not None else [])

    def from_arrays(self, arrays: list[np.ndarray]):
        """Inverse of to_arrays."""
        if self._ditto is not None:  # its states are the last 1 + parts arrays
            parts = self._ditto.states.saved_arrays
            self._ditto.states = self._ditto.states.from_arrays(arrays[-parts:])
            arrays = arrays[:-parts]
        if hasattr(self._process, "from_arrays"):
            state = self._process.from_arrays(arrays)
        else:
            state = builder.unflatten(self._process.initialize(), arrays)
        if state is None:
            raise UsageError("checkpoint does not match this model; use --overwrite")
        return state

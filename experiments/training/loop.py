"""The training loop shared by federated and centralised runs.

Per round: the trainer's round, evaluation on eval rounds, one metrics row,
and a checkpoint every few rounds. A run resumes from its newest checkpoint;
rows after it are dropped first, so no row is lost or duplicated.
"""

from __future__ import annotations

import time
from typing import Protocol

from experiments.core import results, stops
from experiments.core.progress import Progress
from experiments.training.evaluation import Evaluator, eval_columns
from tasks.scoring import Scoring

TRAIN_COLUMNS = (
    "round", "train_loss", "train_examples", "clients",
    "bytes_down_per_client", "bytes_up_per_client", "round_seconds",
)
PRIVACY_COLUMNS = ("epsilon_rdp", "epsilon_pld", "dp_delta", "accounted_population",
                   "accounted_cohort", "dp_clip")
# Outlier clients and secure aggregation's cost (experiments.simulation.outliers,
# .split_round); with --dp=distributed the share of coordinates whose sum wrapped.
SECAGG_COLUMNS = ("outlier_clients", "secagg_survivors", "secagg_bits_up_per_client",
                  "secagg_extra_bits_up_per_client", "secagg_messages",
                  "ddp_wrapped_fraction")
# Exact per-client traffic (experiments.aggregators.traffic); bytes_* stay in TRAIN_COLUMNS.
COMMUNICATION_COLUMNS = ("bits_down_per_client", "bits_up_per_client", "compression_factor")
# Eligible / selected / reporting clients and simulated round time
# (experiments.simulation.population).
POPULATION_COLUMNS = ("eligible", "selected", "completed", "dropped", "late",
                      "sim_round_seconds")
# Task-independent columns; each feature module adds its tuple here.
COLUMNS = (TRAIN_COLUMNS + PRIVACY_COLUMNS + COMMUNICATION_COLUMNS + SECAGG_COLUMNS
           + POPULATION_COLUMNS)


def unfilled(dp: bool, secure_sum: bool, outliers: bool, distributed: bool
             ) -> frozenset[str]:
    """The columns a run of these features never fills, left out of its metrics.csv:
    privacy without --dp, the secure sum's without --aggregator=secure_sum, the outlier
    count without outliers, the wrap share without distributed DP over secure_sum."""
    left = set()
    if not dp:
        left |= set(PRIVACY_COLUMNS)
    if not secure_sum:
        left |= {c for c in SECAGG_COLUMNS if c.startswith("secagg_")}
    if not outliers:
        left.add("outlier_clients")
    if not (distributed and secure_sum):
        left.add("ddp_wrapped_fraction")
    return frozenset(left)


def columns(scoring: Scoring | None = None, extra_eval: tuple[str, ...] = (),
            omit: frozenset[str] = frozenset()) -> list[str]:
    """The metrics.csv columns for a task's scoring (default: classification), less
    `omit` (`unfilled`'s columns a run cannot fill).

    Training metrics of the task follow train_loss (train_accuracy, train_rmse,
    ...); its eval columns (test_*, fed_test_*, naive_*, then `extra_eval`, e.g.
    personalisation's when enabled) come last.
    """
    scoring = scoring or Scoring()
    train = ("round", "train_loss") + tuple(f"train_{m}" for m in scoring.train_metric_names)
    rest = tuple(c for c in COLUMNS if c not in train and c not in omit)
    return list(train + rest + eval_columns(scoring) + tuple(extra_eval) + ("eval_seconds",))


class Trainer(Protocol):
    """What the loop needs from a federated or centralised trainer."""

    summary: dict  # recorded in hparams.json beside the data's (e.g. client state cost)

    def initial_state(self): ...
    def run_round(self, state, round_num: int): ...
    def model_weights(self, state): ...
    def personal_models(self, state): ...  # client id -> its own model (Ditto, local layers)
    def to_arrays(self, state): ...
    def from_arrays(self, arrays): ...


def _is_eval_round(round_num: int, total: int, every: int) -> bool:
    return round_num % every == 0 or round_num == total


def run(trainer: Trainer, evaluator: Evaluator, experiment: results.Experiment,
        total_rounds: int, rounds_per_eval: int, rounds_per_checkpoint: int,
        show_progress: bool = True) -> dict:
    """Trains up to `total_rounds`, resuming if possible; returns the final row."""
    restored = experiment.load_checkpoint()
    if restored is None:
        start, state = 0, trainer.initial_state()
    else:
        start, state = restored[0], trainer.from_arrays(restored[1])
    experiment.truncate_after(start)
    if start >= total_rounds:
        final = _final_row(experiment.read_rows())
        experiment.write_summary(final)  # a kill may have come just before it
        return final
    experiment.clear_summary()
    metric = getattr(evaluator, "primary_column", "test_accuracy")
    progress = Progress(total_rounds, start, show_progress, metric)
    try:
        for round_num in range(start + 1, total_rounds + 1):
            stops.raise_if_stop_requested()  # a stop TensorFlow swallowed
            began = time.monotonic()
            state, row = trainer.run_round(state, round_num)
            row["round"] = round_num
            row["round_seconds"] = time.monotonic() - began
            if _is_eval_round(round_num, total_rounds, rounds_per_eval):
                began = time.monotonic()
                row.update(evaluator.evaluate(trainer.model_weights(state),
                                              trainer.personal_models(state)))
                row["eval_seconds"] = time.monotonic() - began
            experiment.append(row)
            experiment.log_scalars(round_num, row)
            if round_num % rounds_per_checkpoint == 0 or round_num == total_rounds:
                experiment.save_checkpoint(round_num, trainer.to_arrays(state))
            progress.update(round_num, row.get(metric), row.get("epsilon_rdp"))
    finally:
        progress.close()
    final = _final_row(experiment.read_rows())
    experiment.write_summary(final)
    return final


def _final_row(rows: list[dict]) -> dict:
    """The last eval row, with values parsed back to numbers."""
    evals = [r for r in rows if r.get("test_loss")]
    if not evals:
        return {}
    return {k: float(v) if v not in ("", None) else None for k, v in evals[-1].items()}

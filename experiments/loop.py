"""The training loop shared by federated and centralised runs.

Per round: the trainer's round, evaluation on eval rounds, one metrics row,
and a checkpoint every few rounds. A run resumes from its newest checkpoint;
rows after it are dropped first, so no row is lost or duplicated.
"""

from __future__ import annotations

import time
from typing import Protocol

from experiments import results
from experiments.evaluation import EVAL_COLUMNS, Evaluator
from experiments.progress import Progress

TRAIN_COLUMNS = (
    "round", "train_loss", "train_accuracy", "train_examples", "clients",
    "bytes_down_per_client", "bytes_up_per_client", "round_seconds",
)
PRIVACY_COLUMNS = ("epsilon_rdp", "epsilon_pld", "dp_clip")
COLUMNS = TRAIN_COLUMNS + PRIVACY_COLUMNS + EVAL_COLUMNS + ("eval_seconds",)


class Trainer(Protocol):
    """What the loop needs from a federated or centralised trainer."""

    def initial_state(self): ...
    def run_round(self, state, round_num: int): ...
    def model_weights(self, state): ...
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
    progress = Progress(total_rounds, start, show_progress)
    try:
        for round_num in range(start + 1, total_rounds + 1):
            began = time.monotonic()
            state, row = trainer.run_round(state, round_num)
            row["round"] = round_num
            row["round_seconds"] = time.monotonic() - began
            if _is_eval_round(round_num, total_rounds, rounds_per_eval):
                began = time.monotonic()
                row.update(evaluator.evaluate(trainer.model_weights(state)))
                row["eval_seconds"] = time.monotonic() - began
            experiment.append(row)
            experiment.log_scalars(round_num, row)
            if round_num % rounds_per_checkpoint == 0 or round_num == total_rounds:
                experiment.save_checkpoint(round_num, trainer.to_arrays(state))
            progress.update(round_num, row.get("test_accuracy"))
    finally:
        progress.close()
    final = _final_row(experiment.read_rows())
    experiment.write_summary(final)
    return final


def _final_row(rows: list[dict]) -> dict:
    """The last eval row, with values parsed back to numbers."""
    evals = [r for r in rows if r.get("test_accuracy")]
    if not evals:
        return {}
    return {k: float(v) if v not in ("", None) else None for k, v in evals[-1].items()}

"""Maintenance outcome of RUL predictions, as FF09's "Turbofan Tycoon" prototype shows it.

    python -m analysis.maintenance RUN_DIR [RUN_DIR ...] [--threshold=10] [--preventative=193]

Each test engine runs from cycle 1 to its failure at its last recorded cycle
(`life`). A strategy picks the cycle m after which the engine is maintained;
if m < life the failure is avoided and life - m cycles of useful life are
wasted, otherwise the engine fails first. Strategies:

- corrective: never maintain (every engine fails, nothing is wasted);
- preventative: maintain at a fixed cycle (the prototype's 193);
- predictive: maintain at the first cycle whose predicted RUL is below the
  threshold (the prototype's 10 cycles), from a model's predictions.

The outcome functions are pure numpy. The command line reads completed
cmapss_rul runs (hparams.json and the newest checkpoint: the model weights
lead the saved state, for federated, centralised and local runs alike),
predicts every cycle of the held-out engines and prints one row per strategy.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import flags

from experiments.core import binary, results
from experiments.core.errors import UsageError

PREDICTIVE_THRESHOLD = 10
PREVENTATIVE_CYCLE = 193


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a strategy does to a fleet of engines."""

    strategy: str
    engines: int
    failed: int  # engines that fail before maintenance
    wasted_cycles: int  # life left unused at maintenance, summed over maintained engines

    @property
    def maintained(self) -> int:
        return self.engines - self.failed

    @property
    def wasted_per_maintained(self) -> float:
        return self.wasted_cycles / self.maintained if self.maintained else 0.0


def outcome(strategy: str, lives: list[int], maintenance: list[int | None]) -> Outcome:
    """Failures and wasted cycles, given each engine's life and maintenance cycle (None: never)."""
    failed, wasted = 0, 0
    for life, cycle in zip(lives, maintenance, strict=True):
        if cycle is None or cycle >= life:
            failed += 1
        else:
            wasted += life - cycle
    return Outcome(strategy, len(lives), failed, wasted)


def predictive_cycle(cycles: np.ndarray, predicted_rul: np.ndarray,
                     threshold: float = PREDICTIVE_THRESHOLD) -> int | None:
    """The first cycle whose predicted RUL is below `threshold` (None: never)."""
    below = np.flatnonzero(np.asarray(predicted_rul) < threshold)
    return int(cycles[below[0]]) if below.size else None


def outcomes(lives: list[int], predictions: dict[str, list[tuple[np.ndarray, np.ndarray]]],
             threshold: float = PREDICTIVE_THRESHOLD,
             preventative: int = PREVENTATIVE_CYCLE) -> list[Outcome]:
    """Corrective, preventative and one predictive row per model.

    `predictions[name]` holds, per engine (same order as `lives`), its cycles
    and the model's predicted RUL at each.
    """
    rows = [outcome("corrective", lives, [None] * len(lives)),
            outcome(f"preventative (at cycle {preventative})", lives,
                    [preventative] * len(lives))]
    for name, per_engine in predictions.items():
        rows.append(outcome(f"predictive {name} (RUL < {threshold:g})", lives,
                            [predictive_cycle(c, p, threshold) for c, p in per_engine]))
    return rows


def markdown(rows: list[Outcome]) -> str:
    """The outcomes as a markdown table."""
    lines = ["| strategy | engines | failed before maintenance | maintained | "
             "wasted cycles (total) | wasted per maintained engine |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.strategy} | {r.engines} | {r.failed} | {r.maintained} | "
              f"{r.wasted_cycles} | {r.wasted_per_maintained:.1f} |" for r in rows]
    return "\n".join(lines)


# ----- reading runs (needs TensorFlow) -----------------------------------------------
def run_predictions(path: str):
    """(lives, per-engine (cycles, predicted RUL), label) of a cmapss_rul run's final model."""
    # Here, not at the top: the outcome functions above are pure numpy and must
    # load without TensorFlow, which the config and the task bring.
    from experiments import config as config_lib
    from tasks import cmapss

    hparams = results.load_hparams(path)["config"]
    if hparams.get("task") != cmapss.NAME:
        raise UsageError(f"{path} is a --task={hparams.get('task')} run, not {cmapss.NAME}")
    names = {f.name for f in dataclasses.fields(config_lib.ExperimentConfig)}
    config = config_lib.ExperimentConfig(**{k: v for k, v in hparams.items() if k in names})
    split = cmapss.load_split(config.task_config())
    restored = results.Experiment(path, []).load_checkpoint()
    if restored is None:
        raise UsageError(f"{path} has no checkpoint")
    model = cmapss.build_model(config.seed)
    shapes = [w.shape for w in model.get_weights()]
    weights = restored[1][:len(shapes)]
    if [w.shape for w in weights] != shapes:
        raise UsageError(f"{path}: the checkpoint does not start with the model's weights")
    model.set_weights(weights)
    per_engine = []
    for engine in split.test:
        x, _ = split.standardise([engine])
        rul = model(x, training=False).numpy()[:, 0] * split.y_std + split.y_mean
        per_engine.append((engine.cycles, rul))
    label = config.algorithm + (f" client {config.local_client}"
                                if config.algorithm == "local" else "")
    return [e.life for e in split.test], per_engine, label


def _report(paths: list[str]) -> None:
    """Prints the outcome table of the runs at `paths` (same held-out engines)."""
    lives, predictions = None, {}
    for path in paths:
        if not os.path.isdir(path):
            raise UsageError(f"{path} is not a run folder")
        run_lives, per_engine, label = run_predictions(path)
        if lives is not None and run_lives != lives:
            raise UsageError(f"{path} holds out other test engines than {paths[0]}")
        lives = run_lives
        predictions[label if label not in predictions else path] = per_engine
    print(markdown(outcomes(lives, predictions, flags.FLAGS.threshold,
                            flags.FLAGS.preventative)))


if __name__ == "__main__":
    flags.DEFINE_float("threshold", PREDICTIVE_THRESHOLD,
                       "Predictive: maintain once the predicted RUL is below this.")
    flags.DEFINE_integer("preventative", PREVENTATIVE_CYCLE,
                         "Preventative: maintain every engine at this cycle.")
    binary.run_with_arguments("maintenance", _report, "give one or more cmapss_rul run "
                              "folders: python -m analysis.maintenance RUN_DIR...", None)

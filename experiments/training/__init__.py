"""Running an experiment: trainers, the round loop, evaluation, personalisation.

- `loop`: `run(trainer, evaluator, experiment, ...)`, rounds, evaluation,
  checkpoints and resume through `experiments.core.results`.
- `trainers`: which trainer runs an --algorithm (federated, centralised, local).
- `federated_trainer`, `centralized_trainer`: the two kinds of round.
- `evaluation`: centralised and per-client test metrics beside the naive baseline.
- `personalization`: fine-tune-then-score on each test client.

Modules are imported directly; the package re-exports nothing.
"""

"""Plans a DP experiment without training: epsilon for a noise level, or the inverse.

    ./run.sh privacy --noise_multiplier=1.0 --clients_per_round=50 \\
        --population=3400 --total_rounds=1500 [--delta=D]
    ./run.sh privacy --target_epsilon=8 --clients_per_round=50 \\
        --population=3400 --total_rounds=1500

Uses the same accounting module as training (`experiments.privacy`), so the
numbers are the ones a run would write to metrics.csv.
"""

from __future__ import annotations

import sys

from absl import app, flags

from experiments import errors, privacy

flags.DEFINE_float("noise_multiplier", None, "Gaussian noise std / clip.")
flags.DEFINE_float("target_epsilon", None, "Find the smallest noise multiplier reaching this.")
flags.DEFINE_integer("clients_per_round", 10, "Clients per round (expected, for poisson).")
flags.DEFINE_integer("population", None, "Number of clients N.")
flags.DEFINE_integer("total_rounds", 100, "Rounds of training.")
flags.DEFINE_float("delta", 0.0, "delta (0: 1 / population^1.1).")
flags.DEFINE_enum("dp", "fixed", privacy.MECHANISMS, "DP mechanism.")
flags.DEFINE_enum("client_sampling", "uniform", privacy.SAMPLINGS, "Client sampling.")
FLAGS = flags.FLAGS


def _format(value: float | None) -> str:
    return "n/a (PLD has no event for this sampling)" if value is None else f"{value:.4f}"


def plan() -> str:
    """The report for the parsed flags."""
    if FLAGS.population is None or FLAGS.population < 1:
        raise errors.UsageError("--population (number of clients, >= 1) is required")
    if (FLAGS.noise_multiplier is None) == (FLAGS.target_epsilon is None):
        raise errors.UsageError("give exactly one of --noise_multiplier and --target_epsilon")
    if FLAGS.total_rounds < 1:
        raise errors.UsageError(f"--total_rounds={FLAGS.total_rounds} must be >= 1")
    m = privacy.Mechanism(
        kind=FLAGS.dp, noise_multiplier=FLAGS.noise_multiplier or 0.0,
        clients_per_round=FLAGS.clients_per_round, population=FLAGS.population,
        sampling=FLAGS.client_sampling,
        delta=FLAGS.delta or privacy.default_delta(FLAGS.population))
    privacy.check(m)
    lines = []
    rounds = FLAGS.total_rounds
    if FLAGS.target_epsilon is not None:
        z = privacy.calibrate(m, rounds, FLAGS.target_epsilon)
        m = privacy.Mechanism(**{**m.__dict__, "noise_multiplier": z})
        lines.append(f"noise_multiplier {z:.4f} is the smallest reaching epsilon "
                     f"{FLAGS.target_epsilon} (RDP) after {rounds} rounds")
    lines.append(
        f"{m.kind} DP, {m.sampling} sampling of {m.clients_per_round} of "
        f"{m.population} clients, noise_multiplier {m.noise_multiplier:.4f}, "
        f"{rounds} rounds, delta {m.delta:.3g}")
    lines.append(f"epsilon (RDP): {privacy.epsilon_rdp(m, rounds, rounds):.4f}")
    lines.append(f"epsilon (PLD): {_format(privacy.epsilon_pld(m, rounds, rounds))}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        print(f"privacy: error: unexpected arguments {argv[1:]}", file=sys.stderr)
        sys.exit(errors.exit_code())
    errors.guarded("privacy", lambda: print(plan()), errors.NOTHING_WRITTEN)


if __name__ == "__main__":
    app.run(main, flags_parser=errors.flags_parser("privacy"))

"""Plans a DP experiment without training: epsilon for a noise level, or the inverse.

    ./run.sh privacy --noise_multiplier=1.0 --clients_per_round=50 \\
        --population=3400 --total_rounds=1500 [--delta=D]
    ./run.sh privacy --target_epsilon=8 --clients_per_round=50 \\
        --population=3400 --total_rounds=1500
    ./run.sh privacy --dp=distributed --dimension=199210 --num_bits=16 ...

Uses the same accounting module as training (`experiments.privacy.accounting`), so the
numbers are the ones a run would write to metrics.csv.
"""

from __future__ import annotations

from absl import flags

from experiments.core import binary, errors, stops
from experiments.privacy import accounting
from experiments.privacy.discrete_gaussian import Encoding, encoding_of
from experiments.privacy.settings import DISTRIBUTED_NOISES, ROTATION_TYPES, DpSettings

flags.DEFINE_float("noise_multiplier", None, "Gaussian noise std / clip.")
flags.DEFINE_float("target_epsilon", None, "Find the smallest noise multiplier reaching this.")
flags.DEFINE_integer("clients_per_round", 10, "Clients per round (expected, for poisson).")
flags.DEFINE_integer("population", None, "Number of clients N.")
flags.DEFINE_integer("total_rounds", 100, "Rounds of training.")
flags.DEFINE_float("delta", 0.0, "delta (0: 1 / population^1.1).")
flags.DEFINE_enum("dp", "fixed", accounting.MECHANISMS, "DP mechanism.")
flags.DEFINE_enum("client_sampling", "uniform", accounting.SAMPLINGS, "Client sampling.")
# --dp=distributed: its encoding (experiments.privacy.discrete_gaussian), as in training.
flags.DEFINE_integer("dimension", 0, "distributed: the model's trainable parameters.")
flags.DEFINE_float("clip", DpSettings.clip, "distributed: L2 clip of each update.")
flags.DEFINE_integer("num_bits", DpSettings.num_bits, "distributed: field bits.")
flags.DEFINE_float("beta", DpSettings.beta, "distributed: conditional rounding bias.")
flags.DEFINE_float("k_stddevs", DpSettings.k_stddevs, "distributed: stddevs fitted.")
flags.DEFINE_enum("rotation_type", DpSettings.rotation_type, ROTATION_TYPES,
                  "distributed: rotation.")
flags.DEFINE_enum("distributed_noise", DpSettings.distributed_noise, DISTRIBUTED_NOISES,
                  "distributed: the clients' integer noise (dgauss or skellam).")
flags.DEFINE_integer("bands", DpSettings.bands, "banded_mf: band width of the strategy.")
FLAGS = flags.FLAGS


def _format(value: float | None) -> str:
    return "n/a (PLD has no event for this sampling)" if value is None else f"{value:.4f}"


def _encoding() -> Encoding:
    """The distributed mechanism's encoding from the flags (checked as training does)."""
    if FLAGS.dimension < 1:
        raise errors.UsageError("--dp=distributed needs --dimension, the model's trainable "
                                "parameters (>= 1)")
    if not (1 <= FLAGS.num_bits <= 32 and 0 <= FLAGS.beta < 1 and FLAGS.k_stddevs > 0
            and 2 ** (2 * FLAGS.num_bits) > FLAGS.clients_per_round * FLAGS.k_stddevs ** 2):
        raise errors.UsageError(
            f"--num_bits={FLAGS.num_bits} (1..32), --beta={FLAGS.beta} ([0, 1)) and "
            f"--k_stddevs={FLAGS.k_stddevs} (> 0) must fit {FLAGS.clients_per_round} "
            f"clients per round")
    dp = DpSettings(dp="distributed", noise_multiplier=FLAGS.noise_multiplier or 0.0,
                    clip=FLAGS.clip, num_bits=FLAGS.num_bits, beta=FLAGS.beta,
                    k_stddevs=FLAGS.k_stddevs, rotation_type=FLAGS.rotation_type,
                    distributed_noise=FLAGS.distributed_noise)
    return encoding_of(dp, FLAGS.clients_per_round, FLAGS.dimension)


def plan() -> str:
    """The report for the parsed flags."""
    if FLAGS.population is None or FLAGS.population < 1:
        raise errors.UsageError("--population (number of clients, >= 1) is required")
    if (FLAGS.noise_multiplier is None) == (FLAGS.target_epsilon is None):
        raise errors.UsageError("give exactly one of --noise_multiplier and --target_epsilon")
    if FLAGS.total_rounds < 1:
        raise errors.UsageError(f"--total_rounds={FLAGS.total_rounds} must be >= 1")
    m = accounting.Mechanism(
        kind=FLAGS.dp, noise_multiplier=FLAGS.noise_multiplier or 0.0,
        clients_per_round=FLAGS.clients_per_round, population=FLAGS.population,
        sampling=FLAGS.client_sampling,
        delta=FLAGS.delta or accounting.default_delta(FLAGS.population),
        encoding=_encoding() if FLAGS.dp == "distributed" else None,
        bands=FLAGS.bands if FLAGS.dp == "banded_mf" else 0, rounds=FLAGS.total_rounds)
    accounting.check(m)
    lines = []
    rounds = FLAGS.total_rounds
    if FLAGS.target_epsilon is not None:
        z = accounting.calibrate(m, rounds, FLAGS.target_epsilon)
        m = accounting.Mechanism(**{**m.__dict__, "noise_multiplier": z})
        lines.append(f"noise_multiplier {z:.4f} is the smallest reaching epsilon "
                     f"{FLAGS.target_epsilon} (RDP) after {rounds} rounds")
    lines.append(
        f"{m.kind} DP, {m.sampling} sampling of {m.clients_per_round} of "
        f"{m.population} clients, noise_multiplier {m.noise_multiplier:.4f}, "
        f"{rounds} rounds, delta {m.delta:.3g}")
    lines.append(f"epsilon (RDP): {accounting.epsilon_rdp(m, rounds, rounds):.4f}")
    lines.append(f"epsilon (PLD): {_format(accounting.epsilon_pld(m, rounds, rounds))}")
    lines.append(f"noise in the running sum of updates (RMS over rounds, x clip): "
                 f"{accounting.prefix_noise(m, rounds):.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    binary.run("privacy", lambda: print(plan()), interrupted=stops.NOTHING_WRITTEN,
               tensorflow=False)

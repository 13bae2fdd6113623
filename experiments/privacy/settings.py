"""The privacy flags: the DP mechanism of the aggregate, and the memorisation canaries."""

from __future__ import annotations

import dataclasses
import math

from experiments.core.settings import setting

DP_MECHANISMS = ("none", "fixed", "adaptive", "tree", "banded_mf", "local", "distributed")
ROTATION_TYPES = ("hd", "dft")
DISTRIBUTED_NOISES = ("dgauss", "skellam")


@dataclasses.dataclass(frozen=True)
class DpSettings:
    """User-level differential privacy (on --algorithm=fedavg_unweighted)."""

    dp: str = setting("none", "DP mechanism: fixed clip (McMahan et al. 2018), adaptive "
                      "clip (Andrew et al. 2021), tree (DP-FTRL), banded_mf (DP-FTRL with a "
                      "banded matrix factorisation), local, distributed "
                      "(discrete Gaussian or Skellam shares over a secure sum).",
                      DP_MECHANISMS)
    noise_multiplier: float = setting(0.0, "Gaussian noise std as a multiple of the clip.")
    clip: float = setting(1.0, "L2 clip of each client update (fixed, tree, local).")
    initial_clip: float = setting(0.1, "Adaptive clipping: initial clip.")
    target_unclipped_quantile: float = setting(0.5, "Adaptive clipping: target quantile.")
    adaptive_clip_learning_rate: float = setting(0.2, "Adaptive clipping: learning rate.")
    clipped_count_stddev: float = setting(
        0.0, "Adaptive clipping: noise on the clipped count (0: 0.05 * clients_per_round).")
    delta: float = setting(0.0, "DP delta (0: 1 / population^1.1).")
    target_epsilon: float = setting(
        0.0, "If > 0, use the smallest --noise_multiplier reaching this epsilon "
        "after --total_rounds.")
    # A deployment simulated on the clients at hand (McMahan et al. 2018; pfl-research's
    # noise_cohort_size): docs/privacy.md, "Simulated deployments".
    noise_cohort_size: int = setting(
        0, "Noise as if each round averaged this many clients: std noise_multiplier x "
        "clip / noise_cohort_size on the average update (0: --clients_per_round). Needs "
        "--simulated_population.")
    bands: int = setting(8, "banded_mf: band width b of the strategy (at most the N // K "
                         "rounds between a client's participations; 1: independent noise).")
    # --dp=distributed (experiments.privacy.discrete_gaussian); names and defaults
    # as google-research/federated's distributed_dp.
    num_bits: int = setting(16, "distributed: bits per coordinate of the secure sum's "
                            "modular field (the noisy sum of the cohort must fit).")
    beta: float = setting(math.exp(-0.5), "distributed: conditional randomized rounding "
                          "bias in [0, 1) (0: plain stochastic rounding).")
    k_stddevs: float = setting(4.0, "distributed: standard deviations of the noisy sum "
                               "that the scaling fits into --num_bits.")
    rotation_type: str = setting("hd", "distributed: random rotation before rounding "
                                 "(hd: Walsh-Hadamard, dft: Fourier).", ROTATION_TYPES)
    distributed_noise: str = setting(
        "dgauss", "distributed: each client's integer noise share (dgauss: discrete "
        "Gaussian, Kairouz et al. 2021; skellam: Skellam, Agarwal et al. 2021).",
        DISTRIBUTED_NOISES)
    simulated_population: int = setting(
        0, "The population the accountant assumes (0: the real training clients): "
        "epsilon is then that of a deployment sampling --noise_cohort_size of this many "
        "clients per round.")


@dataclasses.dataclass(frozen=True)
class CanarySettings:
    """The memorisation audit's canaries (experiments.privacy.canaries)."""

    canaries: int = setting(
        0, "Memorisation audit: this many canaries (EMNIST: an image copied with a random "
        "wrong label; text tasks: 'my secret number is' and random digits), each inserted "
        "into one seeded training client, plus as many never-inserted controls.")
    canary_repeats: int = setting(10, "Copies of each canary in its client's training data.")

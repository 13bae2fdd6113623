"""The outlier flags (which training clients misbehave, and how), free of TensorFlow."""

from __future__ import annotations

import dataclasses

from experiments.core.settings import setting

OUTLIER_KINDS = ("label_flip", "constant_label", "scaled_random")


@dataclasses.dataclass(frozen=True)
class OutlierSettings:
    """Which training clients misbehave, and how."""

    outlier_fraction: float = setting(
        0.0, "Fraction of training clients that are outliers (seeded choice).")
    outlier_kind: str = setting(
        "label_flip", "label_flip: label y -> C-1-y; constant_label: every label is "
        "--outlier_label; scaled_random: the update is replaced by a random direction "
        "of --outlier_scale times the honest update's norm.", OUTLIER_KINDS)
    outlier_label: int = setting(0, "constant_label: the label outliers always report.")
    outlier_scale: float = setting(
        10.0, "scaled_random: norm of the random update / norm of the honest one.")

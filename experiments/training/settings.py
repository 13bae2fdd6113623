"""The personalisation flags (fine-tuning, Ditto, local layers), free of TensorFlow."""

from __future__ import annotations

import dataclasses

from experiments.core.settings import setting


@dataclasses.dataclass(frozen=True)
class PersonalizationSettings:
    """Fine-tuning the global model on each test client's own data before scoring."""

    personalization_steps: int = setting(
        0, "On eval rounds, fine-tune the global model for this many local SGD steps on "
        "each test client's own training data and score it on its test data (0: off).")
    personalization_learning_rate: float = setting(
        0.0, "SGD rate of the personalisation fine-tuning (0: --client_learning_rate).")
    ditto_lambda: float = setting(
        0.0, "Ditto (Li et al. 2021): each client also trains a personal model "
        "regularised towards the global one with this strength (0: off).")
    local_layers: int = setting(
        0, "Keep the model's last this many layers with weights on each client, trained "
        "locally and never uploaded (FedPer; 0: off).")

    @property
    def keeps_personal_models(self) -> bool:
        """Whether training leaves each client a model of its own (Ditto, local layers)."""
        return self.ditto_lambda > 0 or self.local_layers > 0

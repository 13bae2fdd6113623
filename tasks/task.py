"""What every federated task provides to the training loop and to evaluation.

A task bundles client data (train and test splits), per-client preprocessing,
the Keras model and its loss, and the trivial baseline a result must beat.
New tasks are one module in `tasks/` plus one line in `tasks.registry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tasks.client_arrays import ArrayClientData
from tasks.scoring import Scoring
from tasks.settings import TaskConfig

SHUFFLE_BUFFER = 10_000


@dataclasses.dataclass(frozen=True)
class Task:
    """A federated learning task.

    Client data yields model-ready (x, y) examples (prepared once at load);
    client and centralised training batch them with `to_batches`; evaluation
    reads the arrays in slices of `eval_batch_size` rows. `build_model(seed)`
    returns an uncompiled Keras model (outputs are logits for classification).
    `scoring` gives the loss, the metrics and the naive baseline a result must
    beat (e.g. the majority class).
    """

    name: str
    config: TaskConfig
    train_data: ArrayClientData
    test_data: ArrayClientData
    build_model: Callable[[int], tf.keras.Model]
    scoring: Scoring = dataclasses.field(default_factory=Scoring)
    model_name: str = ""
    data_file: str = ""
    description: str = ""
    # Text tasks: sentences -> model-ready (x, y) rows, prepared as the task's own
    # examples are (memorisation canaries write text through it).
    encode_text: Callable[[list[str]], tuple[np.ndarray, np.ndarray]] | None = None
    # --partition other than natural: the partition's summary (tasks.partition.summary).
    partition: dict | None = None

    def data_summary(self) -> dict:
        """Which data a run used, for hparams.json (file, clients, examples)."""
        def examples(data: ArrayClientData) -> int:
            return sum(data.num_examples(c) for c in data.client_ids)

        return {"file": self.data_file, "description": self.description,
                "model": self.model_name, "primary_metric": self.scoring.primary,
                "train_clients": len(self.train_data.client_ids),
                "test_clients": len(self.test_data.client_ids),
                "train_examples": examples(self.train_data),
                "test_examples": examples(self.test_data),
                **({"partition": self.partition} if self.partition else {})}

    def to_batches(self, dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
        """(x, y) examples to (x, y) batches."""
        return dataset.batch(batch_size)

    def preprocess_train(self, dataset: tf.data.Dataset, seed: int) -> tf.data.Dataset:
        """One client's training batches: capped, seeded shuffle, epochs, batched."""
        if self.config.max_elements_per_client:
            dataset = dataset.take(self.config.max_elements_per_client)
        dataset = dataset.shuffle(
            SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True
        ).repeat(self.config.client_epochs_per_round)
        return self.to_batches(dataset, self.config.client_batch_size)

    def loss(self) -> tf.keras.losses.Loss:
        """The training loss on the model's outputs."""
        return self.scoring.loss()

    def metrics(self) -> list[tf.keras.metrics.Metric]:
        """Metrics reported during training (column train_<name>)."""
        return self.scoring.train_metrics()

    def input_spec(self):
        """Element spec of one training batch, as TFF's model wrapper wants it."""
        example = self.train_data.create_tf_dataset_for_client(
            self.train_data.client_ids[0]
        )
        return self.preprocess_train(example, 0).element_spec

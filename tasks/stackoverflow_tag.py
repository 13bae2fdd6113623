"""StackOverflow tag prediction (Reddi et al. 2021; TFF's baseline task).

Each example (a sentence, with its post's title and tags) is a bag of the
`--vocab_size` most frequent words and a multi-hot vector over the
`--tag_vocab_size` most frequent tags; the model is multi-label logistic
regression (`tasks.stackoverflow_models.logistic`). Scored by recall@5
(primary), precision@5 and pooled AUC; the naive baseline ranks tags by
their training frequency (the most frequent tags for every example).

The training loss is binary cross-entropy summed over the batch (averaged
over tags), as in Reddi et al.'s code, so their tuned learning rates (client
10^2) carry over.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from experiments.core.errors import UsageError
from tasks import client_store, stackoverflow, stackoverflow_models, stackoverflow_vocab
from tasks.scoring import MultiLabelScoring
from tasks.settings import TaskConfig
from tasks.task import Task


class TagScoring(MultiLabelScoring):
    """Recall@5 scoring with Reddi et al.'s batch-summed training loss."""

    def loss(self) -> tf.keras.losses.Loss:
        return tf.keras.losses.BinaryCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.SUM)


def preparation(words: list[str], tags: list[str]) -> client_store.Preparation:
    """Posts (body and title) to in-vocabulary word ids padded with -1 (as wide as
    the split's longest post), and their tags to multi-hot rows."""
    def prepare(arrays: dict) -> tuple[np.ndarray, np.ndarray]:
        texts = [t + b" " + title for t, title in zip(arrays["tokens"], arrays["title"],
                                                       strict=True)]
        return (stackoverflow.bag_of_word_ids(texts, words),
                stackoverflow.multi_hot_tags(arrays["tags"], tags))

    return stackoverflow.preparation(
        "stackoverflow_tag", prepare, {"vocabulary": stackoverflow.vocabulary_hash(words),
                                       "tags": stackoverflow.vocabulary_hash(tags)},
        (stackoverflow.bag_of_word_ids, stackoverflow.multi_hot_tags), x_pad=-1)


def build_task(config: TaskConfig) -> Task:
    """Tag prediction with the model named by --model (default `logistic`)."""
    model = config.model or "logistic"
    if model not in stackoverflow_models.TAG_MODELS:
        raise UsageError(f"--model={model} is not a model of --task=stackoverflow_tag; "
                         f"valid: {', '.join(stackoverflow_models.TAG_MODELS)}")
    path = stackoverflow.data_path(config.data_dir)
    words = stackoverflow_vocab.read_words(config.data_dir, config.vocab_size)
    tags = stackoverflow_vocab.read_tags(config.data_dir, config.tag_vocab_size)
    train, test = stackoverflow.load_splits(path, config.eval_split,
                                            preparation(words, tags), config.data_store)
    builder = stackoverflow_models.TAG_MODELS[model]
    return Task(
        name="stackoverflow_tag",
        config=config,
        train_data=train,
        test_data=test,
        build_model=lambda seed: builder(len(words), len(tags), seed),
        scoring=TagScoring(k=5),
        model_name=model,
        data_file=path,
        description=(f"{stackoverflow.data_name(path)} tag prediction, {len(words)} words -> "
                     f"{len(tags)} tags, "
                     f"eval on {config.eval_split}, {model}"),
    )

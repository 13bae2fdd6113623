"""StackOverflow next-word prediction (Reddi et al. 2021; TFF's baseline task).

Clients are users, examples their sentences as `sequence_length` input ids
and the next id at each position (`tasks.stackoverflow`). The vocabulary is
the `--vocab_size` most frequent words plus padding, one out-of-vocabulary
bucket and begin / end of sentence. `accuracy` leaves out padding, OOV, BOS
and EOS targets (TFF's `accuracy_without_out_of_vocab_or_end_of_sentence`,
the number Reddi et al. report); `accuracy_with_special` leaves out padding
only (TFF's `accuracy`). The naive baseline predicts the most frequent word.
"""

from __future__ import annotations

import numpy as np

from experiments.core.errors import UsageError
from tasks import client_store, stackoverflow, stackoverflow_models, stackoverflow_vocab
from tasks.scoring import SequenceScoring
from tasks.settings import TaskConfig
from tasks.task import Task


def preparation(vocab: list[str], sequence_length: int) -> client_store.Preparation:
    """Sentences to (x, y) rows of `sequence_length` word ids (TFF's `to_ids`)."""
    def prepare(arrays: dict) -> tuple[np.ndarray, np.ndarray]:
        ids = stackoverflow.word_ids(arrays["tokens"], vocab, sequence_length)
        return np.ascontiguousarray(ids[:, :-1]), np.ascontiguousarray(ids[:, 1:])

    return stackoverflow.preparation(
        "stackoverflow_word", prepare, {"vocabulary": stackoverflow.vocabulary_hash(vocab),
                                        "sequence_length": sequence_length},
        (stackoverflow.word_ids,))


def build_task(config: TaskConfig) -> Task:
    """Next-word prediction with the model named by --model (default `lstm`)."""
    model = config.model or "lstm"
    if model not in stackoverflow_models.WORD_MODELS:
        raise UsageError(f"--model={model} is not a model of --task=stackoverflow_word; "
                         f"valid: {', '.join(stackoverflow_models.WORD_MODELS)}")
    sequence_length = config.sequence_length or stackoverflow.DEFAULT_SEQUENCE_LENGTH
    path = stackoverflow.data_path(config.data_dir)
    vocab = stackoverflow_vocab.read_words(config.data_dir, config.vocab_size)
    special = stackoverflow.SpecialTokens(len(vocab))
    prepared = preparation(vocab, sequence_length)
    train, test = stackoverflow.load_splits(path, config.eval_split, prepared,
                                            config.data_store)
    builder = stackoverflow_models.WORD_MODELS[model]
    return Task(
        name="stackoverflow_word",
        config=config,
        train_data=train,
        test_data=test,
        build_model=lambda seed: builder(special.total, seed),
        scoring=SequenceScoring(special.pad, (special.oov, special.bos, special.eos)),
        model_name=model,
        data_file=path,
        encode_text=lambda texts: prepared.prepare({"tokens": texts}),
        description=(f"{stackoverflow.data_name(path)} next-word prediction, {len(vocab)} "
                     f"words + 4 special, "
                     f"sequence length {sequence_length}, eval on {config.eval_split}, "
                     f"{model}"),
    )

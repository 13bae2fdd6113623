"""The sweep folder's HParams dashboard layout for TensorBoard.

Each run writes its own settings as an HParams summary
(`experiments.core.results`); this writes, once per sweep, the dashboard's
experiment config into the sweep folder: the flags the sweep varies first,
then the ones a reader looks for, and the metrics to show for every trial
(test score, epsilon, upload bits). `tensorboard --logdir <sweep folder>`
then opens on the trials side by side, in table, parallel-coordinates and
scatter views. TensorBoard's own plugin API builds the summary and its own
event writer writes it, so the sweep launcher loads no TensorFlow.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import summary_v2 as hp  # what `api` re-exports
from tensorboard.summary.writer.event_file_writer import EventFileWriter

# Shown after the varied flags, when a sweep does not vary them.
KEY_FLAGS = ("task", "model", "algorithm", "clients_per_round", "total_rounds", "dp",
             "noise_multiplier", "clip", "compression", "partition", "seed")
METRICS = ("test_accuracy", "test_loss", "epsilon_rdp", "bits_up_per_client",
           "round_seconds")
PREFIX = "events.out.tfevents"


def write(folder: str, varied: Sequence[str]) -> str:
    """Writes (or rewrites) the experiment config into `folder`; returns its file."""
    for old in glob.glob(os.path.join(folder, PREFIX + "*")):
        os.remove(old)  # one config per sweep: the latest spec's
    shown = list(dict.fromkeys(list(varied) + list(KEY_FLAGS)))
    summary = hp.hparams_config_pb(hparams=[hp.HParam(name) for name in shown],
                                   metrics=[hp.Metric(tag) for tag in METRICS])
    writer = EventFileWriter(folder)
    writer.add_event(event_pb2.Event(summary=summary))
    writer.close()
    return glob.glob(os.path.join(folder, PREFIX + "*"))[0]

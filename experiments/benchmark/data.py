"""Which data the benchmark trains on: the real EMNIST file if there is one, else synthetic.

The real file is looked for, never downloaded; without it, synthetic clients
of FEMNIST-300's shape (`tasks.emnist_synthetic`) are written to a temporary
folder for the run, so the benchmark works offline.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

from experiments.benchmark.settings import SEED
from tasks import data_files

DATA_FILE = "emnist_all.sqlite"  # tasks.emnist.DATA_FILE (not imported: it loads TFF)
# Synthetic stand-in for FEMNIST-300: 300 writers, 41,202 train examples
# (137.3 per writer on average).
SYNTHETIC_CLIENTS = 300
SYNTHETIC_EXAMPLES_PER_CLIENT = (100, 175)


def real_data_folder(data_dir: str) -> str | None:
    """The folder whose emnist_all.sqlite the benchmark uses, or None for synthetic:
    found as every command finds its data (`tasks.data_files.find`), never downloaded."""
    path = data_files.find(data_dir or None, DATA_FILE)
    return os.path.dirname(path) if path else None


@contextlib.contextmanager
def data_folder(data_dir: str) -> Iterator[tuple[str, bool]]:
    """Yields (folder holding emnist_all.sqlite, is_real); synthetic data is temporary."""
    folder = real_data_folder(data_dir)
    if folder is not None:
        yield folder, True
        return
    if data_dir:
        print(f"bench: no {DATA_FILE} in --data_dir={data_dir}; using synthetic clients",
              file=sys.stderr)
    # Imported here only: it loads TensorFlow Federated, which finding the real
    # file (and its tests) need not wait for.
    from tasks import emnist_synthetic

    with tempfile.TemporaryDirectory(prefix="bench-emnist-") as tmp:
        print(f"bench: writing {SYNTHETIC_CLIENTS} synthetic EMNIST clients into {tmp}",
              file=sys.stderr)
        emnist_synthetic.write(tmp, num_clients=SYNTHETIC_CLIENTS,
                               examples_per_client=SYNTHETIC_EXAMPLES_PER_CLIENT, seed=SEED)
        yield tmp, False


def data_name(is_real: bool, train_clients: int) -> str:
    """How results must name the data (FEMNIST-300 is never 'EMNIST')."""
    if not is_real:
        return "synthetic"
    return "FEMNIST-300" if train_clients == 300 else f"EMNIST ({train_clients} writers)"

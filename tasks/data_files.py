"""Finds TFF's dataset files, downloading them safely, or says what is missing.

TFF 0.87 stores each federated dataset as one SQLite file in a cache dir and
downloads it when absent. Its download writes straight to the final name, so
an interrupted download leaves a truncated file that looks complete; here the
download goes to a temporary folder and is renamed into place only when done.
Offline, a missing file becomes one clear error naming the file and the flag.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile

from experiments.core.errors import UsageError

_URL_ROOT = "https://storage.googleapis.com/tff-datasets-public/"


def cache_dir(data_dir: str | None) -> str:
    """The folder holding TFF's dataset files: --data_dir, $TFF_DATA_DIR, or ~/.tff."""
    return (
        data_dir
        or os.environ.get("TFF_DATA_DIR")
        or os.path.join(os.path.expanduser("~"), ".tff")
    )


def ensure_file(data_dir: str | None, filename: str) -> str:
    """Returns the path of `filename` in the cache dir, downloading it if absent."""
    folder = cache_dir(data_dir)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"--data_dir={folder} is a file, not a folder; point --data_dir "
                         f"(or TFF_DATA_DIR) at the folder that holds {filename}")
    path = os.path.join(folder, filename)
    if os.path.isfile(path):
        _check_sqlite(path)
        return path
    # Here: TFF (and TensorFlow) load only when a file must be downloaded.
    from tensorflow_federated.python.simulation.datasets import download

    try:
        os.makedirs(folder, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".download-", dir=folder)
    except OSError as e:
        raise UsageError(
            f"--data_dir: cannot create {folder} to hold {filename} ({e.strerror})"
        ) from None
    try:
        fetched = download.get_compressed_file(
            origin=_URL_ROOT + filename + ".lzma", cache_dir=staging
        )
        os.replace(fetched, path)
    except Exception as e:  # noqa: BLE001  (any network or decompression failure)
        reason = str(getattr(e, "reason", "") or e).splitlines()[0][:120]
        raise UsageError(
            f"data file {path} not found and could not be downloaded ({reason}); "
            f"put {filename} there or point --data_dir (or TFF_DATA_DIR) at the "
            f"folder that holds it"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _check_sqlite(path)
    return path


def _check_sqlite(path: str) -> None:
    """Refuses a file that is not a TFF SQLite dataset, naming the file."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            tables = {
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master")
            }
    except sqlite3.DatabaseError as e:
        raise UsageError(
            f"data file {path} is not a readable SQLite database ({e}); "
            f"delete it to download it again, or point --data_dir at a good copy"
        ) from None
    missing = {"examples", "client_metadata"} - tables
    if missing:
        raise UsageError(
            f"data file {path} lacks the TFF tables {sorted(missing)}; "
            f"it is not a TFF dataset file"
        )

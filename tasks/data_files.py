"""Finds TFF's dataset files, the one place every command resolves its data.

A data file (e.g. `emnist_all.sqlite`) is looked for, in order:

1. in `--data_dir`, if given;
2. in `$TFF_DATA_DIR`, if set;
3. in TFF's default cache, `~/.tff`, if the file is there;
4. in the project's shared data beside the checkout (`../shared/data`): its
   compressed copy is unpacked into `.cache/tff_data` (a temporary name,
   renamed when complete; again when the compressed copy is newer) and used
   from there;
5. else downloaded into `~/.tff` as TFF would.

Where the user did not choose the folder (steps 3-5), each process says once on
stdout which source it used (and, for the shared data, the name results must
be reported under: FEMNIST-300 is not EMNIST).
TFF 0.87's own download writes straight to the final name, so an interrupted
download leaves a truncated file that looks complete; here the download goes
to a temporary folder and is renamed into place only when done. Offline, a
missing file becomes one clear error naming the file and the flag.
"""

from __future__ import annotations

import lzma
import os
import shutil
import sqlite3
import tempfile

from experiments.core import paths
from experiments.core.errors import UsageError

_URL_ROOT = "https://storage.googleapis.com/tff-datasets-public/"
# The shared data's compressed copy of each file TFF reads, the files that travel with
# it, and the name results on it are reported under.
SHARED_FILES = {
    "emnist_all.sqlite": ("emnist_all.sqlite.xz", (), "FEMNIST-300 (300 real writers, "
                                                      "not the full EMNIST)"),
    "shakespeare.sqlite": ("shakespeare.sqlite.xz", (), "TFF's federated Shakespeare"),
    "stackoverflow.sqlite": (os.path.join("stackexchange_bioinformatics",
                                          "stackoverflow.sqlite.xz"),
                             ("stackoverflow.word_count", "stackoverflow.tag_count"),
                             "SE-Bioinformatics (StackOverflow layout, not StackOverflow)"),
}
_announced: set[str] = set()


def default_dir() -> str:
    """TFF's own cache folder."""
    return os.path.join(os.path.expanduser("~"), ".tff")


def unpack_dir() -> str:
    """Where the shared data's compressed files are unpacked."""
    return os.path.join(paths.CACHE_DIR, "tff_data")


def shared_dir() -> str:
    """The shared data beside the checkout ($FL_SHARED_DATA_DIR overrides, for tests)."""
    return os.environ.get("FL_SHARED_DATA_DIR") or paths.SHARED_DATA_DIR


def _announce(filename: str, text: str) -> None:
    if text and filename not in _announced:
        _announced.add(filename)
        print(f"data: {text}", flush=True)  # stdout: stderr is kept for errors


def _unpack_shared(filename: str) -> tuple[str, str] | None:
    """The shared data's copy of `filename`, unpacked into .cache/tff_data, and what to
    say of it; None if the shared data has none."""
    if filename not in SHARED_FILES:
        return None
    compressed, companions, name = SHARED_FILES[filename]
    source = os.path.join(shared_dir(), compressed)
    if not os.path.isfile(source):
        return None
    folder = unpack_dir()
    target = os.path.join(folder, filename)
    os.makedirs(folder, exist_ok=True)
    if not os.path.isfile(target) or os.path.getmtime(target) < os.path.getmtime(source):
        partial = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{filename}-",
                                              delete=False)
        try:
            with lzma.open(source) as packed, partial:
                shutil.copyfileobj(packed, partial, 1 << 20)
            os.replace(partial.name, target)  # another process may win: same bytes
        finally:
            if os.path.exists(partial.name):
                os.unlink(partial.name)
    for companion in companions:
        copied = os.path.join(folder, companion)
        if not os.path.isfile(copied):
            shutil.copyfile(os.path.join(os.path.dirname(source), companion), copied)
    return target, (f"{name} from {os.path.relpath(source)} (unpacked into "
                    f"{os.path.relpath(folder)}); report results on it as such")


def _locate(data_dir: str | None, filename: str) -> tuple[str, str] | None:
    """(path, where it came from) by the order above, without downloading."""
    for folder in (data_dir, os.environ.get("TFF_DATA_DIR")):
        if folder:
            path = os.path.join(folder, filename)
            # An explicit choice is never overridden, and needs no announcing.
            return (path, "") if os.path.isfile(path) else None
    path = os.path.join(default_dir(), filename)
    if os.path.isfile(path):
        return path, f"{path} (TFF's default cache)"
    return _unpack_shared(filename)


def find(data_dir: str | None, filename: str) -> str | None:
    """The path of `filename` by the order above, without downloading; None if absent."""
    located = _locate(data_dir, filename)
    if located is None:
        return None
    _announce(filename, located[1])
    return located[0]


def chosen_dir(data_dir: str | None) -> str:
    """The folder a file missing everywhere would be downloaded into."""
    return data_dir or os.environ.get("TFF_DATA_DIR") or default_dir()


def resolve(data_dir: str | None, filename: str) -> str:
    """The path of `filename` by the order above, downloading it as the last resort."""
    located = _locate(data_dir, filename)
    if located is None:
        path = ensure_file(chosen_dir(data_dir), filename)
        _announce(filename, f"{path} (downloaded)")
        return path
    _check_sqlite(located[0])  # a bad file is one error line, with nothing said before
    _announce(filename, located[1])
    return located[0]


def ensure_file(folder: str, filename: str) -> str:
    """Returns the path of `filename` in `folder`, downloading it there if absent."""
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

"""Tests for tasks.data_files: finding, downloading and checking TFF's dataset files.

Downloads never touch the network: TFF's fetch function is replaced by fakes
that fail (offline, truncated stream, Ctrl-C) or succeed, and the one real
urllib attempt goes through a proxy on a local port that refuses connections.
"""

from __future__ import annotations

import lzma
import os
import pathlib
import shutil
import socket
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from experiments.core.errors import UsageError
from tasks import data_files

FILENAME = "emnist_all.sqlite"


@pytest.fixture
def download_module():
    """TFF's download module, whose `_fetch_lzma_file` the tests replace."""
    from tensorflow_federated.python.simulation.datasets import download

    return download


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path) -> None:
    """No user data dir leaks in: TFF_DATA_DIR unset, HOME an empty temp dir."""
    monkeypatch.delenv("TFF_DATA_DIR", raising=False)
    monkeypatch.setenv("FL_SHARED_DATA_DIR", str(tmp_path / "no_shared_data"))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


def _fake_fetch(monkeypatch, download_module,
                behaviour: Callable[[str, str], None]) -> list[tuple[str, str]]:
    """Replaces TFF's network fetch; returns the list of (origin, filename) calls."""
    calls: list[tuple[str, str]] = []

    def fetch(origin: str, filename: str) -> None:
        calls.append((origin, filename))
        behaviour(origin, filename)

    monkeypatch.setattr(download_module, "_fetch_lzma_file", fetch)
    return calls


def _offline(origin: str, filename: str) -> None:
    raise urllib.error.URLError(OSError(-2, "Name or service not known"))


def _truncated_stream(origin: str, filename: str) -> None:
    with open(filename, "wb") as f:
        f.write(b"SQLite format 3\x00" + b"\x00" * 4000)
    raise lzma.LZMAError("Compressed data ended before the end-of-stream marker")


def _interrupted(origin: str, filename: str) -> None:
    with open(filename, "wb") as f:
        f.write(b"SQLite format 3\x00" + b"\x00" * 4000)
    raise KeyboardInterrupt


def _tables_only_sqlite(path: str, tables: tuple[str, ...]) -> None:
    db = sqlite3.connect(path)
    try:
        for table in tables:
            db.execute(f"CREATE TABLE {table} (x)")
        db.commit()
    finally:
        db.close()


# ----- one resolution ---------------------------------------------------------------
def _copy(emnist_dir: str, folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(os.path.join(emnist_dir, FILENAME), folder / FILENAME)
    return str(folder / FILENAME)


def _shared(tmp_path, emnist_dir: str):
    """A shared data folder holding the fixture as emnist_all.sqlite.xz."""
    shared = tmp_path / "shared"
    shared.mkdir()
    with open(os.path.join(emnist_dir, FILENAME), "rb") as raw:
        (shared / (FILENAME + ".xz")).write_bytes(lzma.compress(raw.read()))
    return shared


def test_resolution_order_flag_env_home_shared(monkeypatch, tmp_path, emnist_dir, capsys):
    monkeypatch.setenv("FL_SHARED_DATA_DIR", str(_shared(tmp_path, emnist_dir)))
    monkeypatch.setattr(data_files, "unpack_dir", lambda: str(tmp_path / "unpacked"))
    monkeypatch.setattr(data_files, "_announced", set())
    # Only the shared data: unpacked once (a temp name, then renamed), then reused.
    unpacked = data_files.resolve(None, FILENAME)
    assert unpacked == str(tmp_path / "unpacked" / FILENAME)
    with open(os.path.join(emnist_dir, FILENAME), "rb") as a, open(unpacked, "rb") as b:
        assert a.read() == b.read()
    assert os.listdir(tmp_path / "unpacked") == [FILENAME]  # no temp file left
    out = capsys.readouterr().out
    assert out.startswith("data: FEMNIST-300") and "report results on it as such" in out
    # TFF's default cache comes before the shared data, $TFF_DATA_DIR before that,
    # --data_dir first; an empty value counts as unset.
    home = _copy(emnist_dir, tmp_path / "home" / ".tff")
    assert data_files.resolve(None, FILENAME) == home
    env = _copy(emnist_dir, tmp_path / "env")
    monkeypatch.setenv("TFF_DATA_DIR", os.path.dirname(env))
    assert data_files.resolve(None, FILENAME) == env
    assert data_files.resolve("", FILENAME) == env
    flag = _copy(emnist_dir, tmp_path / "flag")
    assert data_files.resolve(os.path.dirname(flag), FILENAME) == flag
    monkeypatch.setenv("TFF_DATA_DIR", "")
    assert data_files.resolve(None, FILENAME) == home


def test_an_explicit_folder_is_never_overridden(monkeypatch, download_module, tmp_path,
                                                emnist_dir):
    """--data_dir (or $TFF_DATA_DIR) without the file: the download is tried there and
    its failure names that folder, even with the shared data available."""
    monkeypatch.setenv("FL_SHARED_DATA_DIR", str(_shared(tmp_path, emnist_dir)))
    monkeypatch.setattr(data_files, "unpack_dir", lambda: str(tmp_path / "unpacked"))
    _fake_fetch(monkeypatch, download_module, _offline)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match=f"data file {empty / FILENAME} not found"):
        data_files.resolve(str(empty), FILENAME)
    monkeypatch.setenv("TFF_DATA_DIR", str(empty))
    with pytest.raises(UsageError, match=f"data file {empty / FILENAME} not found"):
        data_files.resolve(None, FILENAME)
    assert not (tmp_path / "unpacked").exists()


def test_without_any_copy_the_default_cache_is_downloaded_into(monkeypatch, tmp_path,
                                                               download_module):
    monkeypatch.setenv("FL_SHARED_DATA_DIR", str(tmp_path / "no_shared"))
    calls = _fake_fetch(monkeypatch, download_module, _offline)
    home = os.path.join(str(tmp_path / "home"), ".tff")
    with pytest.raises(UsageError, match=f"data file {home}/{FILENAME} not found"):
        data_files.resolve(None, FILENAME)
    assert len(calls) == 1


# ----- present files -------------------------------------------------------------
def test_present_file_is_returned_without_download(monkeypatch, download_module,
                                                   emnist_dir):
    calls = _fake_fetch(monkeypatch, download_module, _offline)
    path = data_files.ensure_file(emnist_dir, FILENAME)
    assert path == os.path.join(emnist_dir, FILENAME)
    assert calls == []


@pytest.mark.parametrize("content", [b"", b"garbage " * 1000, os.urandom(8192)],
                         ids=["empty", "text", "random"])
def test_file_that_is_not_sqlite_is_a_usage_error(tmp_path, content):
    path = tmp_path / FILENAME
    path.write_bytes(content)
    if not content:
        # SQLite treats an empty file as an empty database: no TFF tables.
        with pytest.raises(UsageError, match="lacks the TFF tables"):
            data_files.ensure_file(str(tmp_path), FILENAME)
        return
    with pytest.raises(UsageError) as info:
        data_files.ensure_file(str(tmp_path), FILENAME)
    message = str(info.value)
    assert str(path) in message
    assert "not a readable SQLite database" in message
    assert "--data_dir" in message
    assert "\n" not in message


@pytest.mark.parametrize("tables", [(), ("examples",), ("client_metadata",)])
def test_sqlite_without_tff_tables_is_a_usage_error(tmp_path, tables):
    path = str(tmp_path / FILENAME)
    _tables_only_sqlite(path, tables)
    with pytest.raises(UsageError) as info:
        data_files.ensure_file(str(tmp_path), FILENAME)
    message = str(info.value)
    assert path in message and "TFF tables" in message
    for table in {"examples", "client_metadata"} - set(tables):
        assert table in message
    assert "\n" not in message


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_truncated_sqlite_file_is_a_usage_error(tmp_path, emnist_dir, fraction):
    data = pathlib.Path(emnist_dir, FILENAME).read_bytes()
    # Cut at a page boundary, the hardest case for SQLite to notice.
    cut = int(len(data) * fraction) // 4096 * 4096 or 4096
    (tmp_path / FILENAME).write_bytes(data[:cut])
    with pytest.raises(UsageError, match="not a readable SQLite database"):
        data_files.ensure_file(str(tmp_path), FILENAME)


# ----- absent files ---------------------------------------------------------------
def test_absent_and_offline_is_a_usage_error_naming_file_and_flag(
        monkeypatch, download_module, tmp_path):
    calls = _fake_fetch(monkeypatch, download_module, _offline)
    folder = tmp_path / "data"
    with pytest.raises(UsageError) as info:
        data_files.ensure_file(str(folder), FILENAME)
    message = str(info.value)
    assert str(folder / FILENAME) in message
    assert FILENAME in message and "--data_dir" in message
    assert "Name or service not known" in message
    assert "\n" not in message
    assert [origin for origin, _ in calls] == [
        "https://storage.googleapis.com/tff-datasets-public/emnist_all.sqlite.lzma"]
    assert os.listdir(folder) == []  # the staging folder is gone


@pytest.fixture
def refused_proxy(monkeypatch) -> Iterator[str]:
    """Routes urllib through a bound, non-listening local port: connections refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    proxy = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, proxy)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "")
    monkeypatch.setattr(urllib.request, "_opener", None)  # re-read the proxy env
    yield proxy
    sock.close()


def test_absent_with_real_urllib_failure(refused_proxy, tmp_path):
    folder = tmp_path / "data"
    with pytest.raises(UsageError) as info:
        data_files.ensure_file(str(folder), FILENAME)
    message = str(info.value)
    assert "not found and could not be downloaded" in message
    assert "--data_dir" in message and "\n" not in message
    assert os.listdir(folder) == []


@pytest.mark.parametrize("behaviour", [_truncated_stream, _offline])
def test_failed_download_leaves_no_partial_file(monkeypatch, download_module, tmp_path,
                                                behaviour):
    calls = _fake_fetch(monkeypatch, download_module, behaviour)
    folder = tmp_path / "data"
    for _ in range(2):  # and the second attempt downloads again, it is not fooled
        with pytest.raises(UsageError, match="could not be downloaded"):
            data_files.ensure_file(str(folder), FILENAME)
        assert os.listdir(folder) == []
    assert len(calls) == 2
    # The partial file was written inside a staging folder in the cache dir.
    assert os.path.dirname(os.path.dirname(calls[0][1])) == str(folder)


def test_interrupted_download_leaves_no_partial_file(monkeypatch, download_module,
                                                     tmp_path):
    _fake_fetch(monkeypatch, download_module, _interrupted)
    folder = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt):
        data_files.ensure_file(str(folder), FILENAME)
    assert os.listdir(folder) == []


def test_successful_download_is_moved_into_place(monkeypatch, download_module, tmp_path,
                                                 emnist_dir):
    source = os.path.join(emnist_dir, FILENAME)
    _fake_fetch(monkeypatch, download_module,
                lambda origin, filename: shutil.copy(source, filename))
    folder = tmp_path / "data"
    path = data_files.ensure_file(str(folder), FILENAME)
    assert path == str(folder / FILENAME)
    assert os.listdir(folder) == [FILENAME]
    assert pathlib.Path(path).read_bytes() == pathlib.Path(source).read_bytes()


def test_data_dir_that_cannot_be_created_names_the_flag(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(UsageError) as info:
        data_files.ensure_file(str(blocker / "sub"), FILENAME)
    message = str(info.value)
    assert message.startswith("--data_dir") and str(blocker / "sub") in message
    assert "\n" not in message

"""Shared pytest fixtures: tiny EMNIST files and the real FEMNIST-300 data."""

from __future__ import annotations

import lzma
import os
import shutil
import socket
from collections.abc import Iterator

import pytest

from experiments.core.paths import CACHE_DIR, SHARED_DATA_DIR

SHARED_DATA = SHARED_DATA_DIR
CACHE = os.path.join(CACHE_DIR, "tff_data")


@pytest.fixture(scope="session")
def emnist_dir(tmp_path_factory) -> str:
    """A folder holding a tiny emnist_all.sqlite in TFF's layout (6 clients)."""
    from tasks import emnist_synthetic

    folder = str(tmp_path_factory.mktemp("emnist"))
    emnist_synthetic.write(folder)
    return folder


@pytest.fixture(scope="session")
def femnist300_dir() -> str:
    """The real FEMNIST-300 data, unpacked from ../shared/data into .cache/."""
    target = os.path.join(CACHE, "emnist_all.sqlite")
    source = os.path.join(SHARED_DATA, "emnist_all.sqlite.xz")
    if not os.path.exists(target):
        if not os.path.exists(source):
            pytest.skip(f"real data not found: {source}")
        os.makedirs(CACHE, exist_ok=True)
        with lzma.open(source) as src, open(target + ".tmp", "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 22)
        os.replace(target + ".tmp", target)
    return CACHE


# Text tasks (tasks.stackoverflow_*, tasks.shakespeare): real data from ../shared/data.
SE_CACHE = os.path.join(CACHE_DIR, "stackexchange_bioinformatics")


def _unpack_xz(source: str, target: str) -> None:
    """Decompresses `source` into `target` once (skips the test if the source is absent)."""
    if os.path.exists(target):
        return
    if not os.path.exists(source):
        pytest.skip(f"real data not found: {source}")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = f"{target}.tmp{os.getpid()}"
    with lzma.open(source) as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 22)
    os.replace(partial, target)


@pytest.fixture(scope="session")
def stackexchange_dir() -> str:
    """SE-Bioinformatics in TFF's StackOverflow layout, with its two count files (not
    StackOverflow itself: report results on it as SE-Bioinformatics)."""
    source = os.path.join(SHARED_DATA, "stackexchange_bioinformatics")
    _unpack_xz(os.path.join(source, "stackoverflow.sqlite.xz"),
               os.path.join(SE_CACHE, "stackoverflow.sqlite"))
    for name in ("stackoverflow.word_count", "stackoverflow.tag_count"):
        if not os.path.exists(os.path.join(SE_CACHE, name)):
            shutil.copyfile(os.path.join(source, name), os.path.join(SE_CACHE, name))
    return SE_CACHE


@pytest.fixture(scope="session")
def shakespeare_dir() -> str:
    """TFF's real federated Shakespeare (715 roles), unpacked into .cache/tff_data."""
    _unpack_xz(os.path.join(SHARED_DATA, "shakespeare.sqlite.xz"),
               os.path.join(CACHE, "shakespeare.sqlite"))
    return CACHE


@pytest.fixture(scope="module")
def refused_proxy() -> Iterator[str]:
    """A proxy URL whose port is bound but not listening: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()

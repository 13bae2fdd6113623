"""The client store: the same examples in the same order as the in-memory path, on the
real data and on files built to need every pass; rebuilt when the source changes; an
interrupted build leaves nothing a run reads; two processes build a store once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.core.paths import REPO_ROOT
from tasks import (
    client_store,
    emnist,
    shakespeare,
    stackoverflow_fixture,
    stackoverflow_tag,
    stackoverflow_vocab,
    stackoverflow_word,
)
from tasks.client_arrays import ArrayClientData


def assert_same(disk: ArrayClientData | None, memory: ArrayClientData | None) -> None:
    """Same clients, sizes and (x, y) rows, dtypes included."""
    assert (disk is None) == (memory is None)
    if disk is None:
        return
    assert disk.client_ids == memory.client_ids
    assert np.array_equal(disk.sizes(), memory.sizes())
    for ours, theirs in zip(disk.pooled_arrays(), memory.pooled_arrays(), strict=True):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert np.array_equal(ours, theirs)
    some = disk.client_ids[len(disk.client_ids) // 2]
    for ours, theirs in zip(disk.arrays(some), memory.arrays(some), strict=True):
        assert np.array_equal(ours, theirs)


def _both(path: str, split: str, preparation: client_store.Preparation, root: str,
          chunk_records: int) -> tuple:
    disk = client_store.load(path, split, preparation, "disk", root, chunk_records)
    return disk, client_store.load(path, split, preparation, "memory")


def test_femnist_test_split_equals_the_in_memory_path(femnist300_dir, tmp_path) -> None:
    path = os.path.join(femnist300_dir, emnist.DATA_FILE)
    disk, memory = _both(path, "all_test", emnist.PREPARATION, str(tmp_path), 997)
    assert len(disk.client_ids) == 300
    assert isinstance(disk.pooled_arrays()[0].base, np.memmap)  # mapped, not loaded
    assert_same(disk, memory)


@pytest.mark.slow
def test_femnist_train_split_equals_the_in_memory_path(femnist300_dir, tmp_path) -> None:
    path = os.path.join(femnist300_dir, emnist.DATA_FILE)
    assert_same(*_both(path, "all_train", emnist.PREPARATION, str(tmp_path), 20_000))


@pytest.mark.parametrize("split", ["train", "test", "heldout"])
def test_stackexchange_text_tasks_equal_the_in_memory_path(stackexchange_dir, tmp_path,
                                                          split: str) -> None:
    path = os.path.join(stackexchange_dir, stackoverflow_vocab.DATA_FILE)
    words = stackoverflow_vocab.read_words(stackexchange_dir, 10_000)
    tags = stackoverflow_vocab.read_tags(stackexchange_dir, 500)
    word = stackoverflow_word.preparation(words, 20)
    assert_same(*_both(path, split, word, str(tmp_path), 2_000))
    # Bag-of-words rows are as wide as the longest post: chunks of 1,000 records each
    # have their own width, padded to the split's on disk.
    tag_disk, tag_memory = _both(path, split, stackoverflow_tag.preparation(words, tags),
                                 str(tmp_path), 1_000)
    assert_same(tag_disk, tag_memory)


def test_shakespeare_equals_the_in_memory_path(shakespeare_dir, tmp_path) -> None:
    path = os.path.join(shakespeare_dir, shakespeare.DATA_FILE)
    for split in ("train", "test"):  # one snippet yields many rows (the source index)
        assert_same(*_both(path, split, shakespeare.preparation(80), str(tmp_path), 2_000))


def _interleaved_file(folder: str) -> str:
    """A StackOverflow-layout file whose records are not in client order, with a
    record of a client the metadata does not list and a listed client without records."""
    path = stackoverflow_fixture.write(folder, num_clients=6, examples_per_client=(3, 9))
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT split_name, client_id, serialized_example_proto FROM "
                          "examples ORDER BY rowid").fetchall()
        order = np.random.default_rng(1).permutation(len(rows))
        db.execute("DELETE FROM examples")
        db.executemany("INSERT INTO examples VALUES (?, ?, ?)", [rows[i] for i in order])
        db.execute("INSERT INTO examples VALUES ('train', 'unlisted', ?)", (rows[0][2],))
        db.execute("INSERT INTO client_metadata VALUES ('empty', 'train', 0)")
    return path


def _fixture_preparation() -> client_store.Preparation:
    return stackoverflow_word.preparation(["the", "a", "is", "of", "main"], 8)


def test_records_out_of_client_order_are_laid_out_by_client(tmp_path) -> None:
    path = _interleaved_file(str(tmp_path / "data"))
    for chunk in (1, 4, 1000):
        disk, memory = _both(path, "train", _fixture_preparation(),
                             str(tmp_path / f"store{chunk}"), chunk)
        assert "unlisted" not in disk.client_ids and "empty" not in disk.client_ids
        assert_same(disk, memory)


def test_a_store_is_reused_and_rebuilt_when_its_source_changes(tmp_path) -> None:
    path = stackoverflow_fixture.write(str(tmp_path / "data"))
    preparation, root = _fixture_preparation(), str(tmp_path / "store")
    first = client_store.load(path, "train", preparation, root=root)
    meta_path = os.path.join(client_store.store_folder(path, "train", preparation, root),
                             "meta.json")
    built = os.stat(meta_path).st_mtime_ns
    client_store.load(path, "train", preparation, root=root)
    assert os.stat(meta_path).st_mtime_ns == built  # reused
    with sqlite3.connect(path) as db:  # one more client: same tables, new content
        proto = db.execute("SELECT serialized_example_proto FROM examples").fetchone()[0]
        db.execute("INSERT INTO examples VALUES ('train', 'newcomer', ?)", (proto,))
        db.execute("INSERT INTO client_metadata VALUES ('newcomer', 'train', 1)")
    second = client_store.load(path, "train", preparation, root=root)
    assert os.stat(meta_path).st_mtime_ns != built
    assert second.client_ids == first.client_ids + ["newcomer"]
    assert_same(second, client_store.load(path, "train", preparation, "memory"))
    other = stackoverflow_word.preparation(["the", "a"], 8)  # another preparation, another store
    assert (client_store.store_folder(path, "train", other, root)
            != client_store.store_folder(path, "train", preparation, root))


class _Interrupt(Exception):
    pass


def test_an_interrupted_build_leaves_nothing_a_run_reads(tmp_path) -> None:
    path = stackoverflow_fixture.write(str(tmp_path / "data"))
    root = str(tmp_path / "store")
    good = _fixture_preparation()
    calls = []

    def failing(arrays: dict) -> tuple:
        calls.append(1)
        if len(calls) == 2:
            raise _Interrupt
        return good.prepare(arrays)

    broken = client_store.Preparation(good.name, good.parse, failing, good.parameters)
    with pytest.raises(_Interrupt):
        client_store.load(path, "train", broken, root=root, chunk_records=5)
    folder = client_store.store_folder(path, "train", broken, root)
    assert sorted(os.listdir(root)) == [os.path.basename(folder) + ".lock"]
    os.makedirs(f"{folder}.building-999999")  # a build killed outright
    calls.append(1)  # from now on `failing` succeeds
    data = client_store.load(path, "train", broken, root=root, chunk_records=5)
    assert not os.path.exists(f"{folder}.building-999999")
    assert_same(data, client_store.load(path, "train", good, "memory"))


def slow_prepare(arrays: dict) -> tuple:
    """The fixture's preparation, slowed down and logged (the concurrency test's child)."""
    with open(os.environ["STORE_TEST_LOG"], "a") as log:
        log.write("chunk\n")
    time.sleep(0.3)
    return _fixture_preparation().prepare(arrays)


def child_load(path: str, root: str) -> None:
    """Loads the fixture's train split through `slow_prepare`; prints a checksum."""
    good = _fixture_preparation()
    slow = client_store.Preparation("slow", good.parse, slow_prepare, good.parameters)
    data = client_store.load(path, "train", slow, root=root, chunk_records=10)
    print(int(np.asarray(data.pooled_arrays()[0], np.int64).sum()), data.client_ids)


def test_two_processes_build_a_store_once(tmp_path) -> None:
    path = stackoverflow_fixture.write(str(tmp_path / "data"), num_clients=8)
    root, log = str(tmp_path / "store"), str(tmp_path / "chunks.log")
    script = (f"from tasks import client_store_test as t; "
              f"t.child_load({path!r}, {root!r})")
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "STORE_TEST_LOG": log}
    children = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    outputs = [child.communicate(timeout=300) for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    assert outputs[0][0] == outputs[1][0]
    with sqlite3.connect(path) as db:
        records = db.execute("SELECT COUNT(*) FROM examples WHERE split_name = 'train'"
                             ).fetchone()[0]
    with open(log) as f:
        assert len(f.readlines()) == -(-records // 10)  # one build's chunks, not two


def test_a_store_records_its_source_and_throughput(tmp_path) -> None:
    path = stackoverflow_fixture.write(str(tmp_path / "data"))
    preparation = _fixture_preparation()
    data = client_store.load(path, "train", preparation, root=str(tmp_path / "store"))
    meta = client_store.read_meta(client_store.store_folder(
        path, "train", preparation, str(tmp_path / "store")))
    assert meta["source"] == client_store.source_identity(path)
    assert meta["examples"] == len(data.pooled_arrays()[0]) == sum(data.sizes())
    assert meta["clients"] == len(data.client_ids)
    assert meta["records_per_second"] > 0 and meta["bytes"] > 0

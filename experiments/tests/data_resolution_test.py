"""Every command finds its data the same way: the one resolution of tasks.data_files.

On a machine with only the shared data beside the checkout (an empty HOME, no
$TFF_DATA_DIR, the shared folder faked with the fixtures' compressed files),
the code path each `run.sh` verb takes to its data must land on the unpacked
shared copy: train, demo, sweep, table and audit build their task through
the task registry; bench looks for the EMNIST file without downloading; vocab
looks for the StackOverflow-layout file and its count files.
"""

from __future__ import annotations

import lzma
import os

import pytest

from tasks import data_files, stackoverflow_fixture


@pytest.fixture
def shared_only(tmp_path, monkeypatch, emnist_dir):
    """The shared data as the only source; returns the unpack folder."""
    shared = tmp_path / "shared"
    (shared / "stackexchange_bioinformatics").mkdir(parents=True)
    with open(os.path.join(emnist_dir, "emnist_all.sqlite"), "rb") as f:
        (shared / "emnist_all.sqlite.xz").write_bytes(lzma.compress(f.read()))
    text = tmp_path / "text"
    stackoverflow_fixture.write(str(text))
    so = shared / "stackexchange_bioinformatics"
    with open(text / "stackoverflow.sqlite", "rb") as f:
        (so / "stackoverflow.sqlite.xz").write_bytes(lzma.compress(f.read()))
    (so / "stackoverflow.word_count").write_text("the\t5\n")  # the fixture has none
    (so / "stackoverflow.tag_count").write_text('{"python": 3}')
    monkeypatch.delenv("TFF_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FL_SHARED_DATA_DIR", str(shared))
    unpacked = tmp_path / "unpacked"
    monkeypatch.setattr(data_files, "unpack_dir", lambda: str(unpacked))
    monkeypatch.setattr(data_files, "_announced", set())
    return unpacked


@pytest.mark.parametrize("verb", ["train", "demo", "sweep", "table", "audit"])
def test_task_building_verbs_find_the_shared_data(shared_only, verb):
    from experiments.config import ExperimentConfig
    from tasks import registry

    config = ExperimentConfig(model="logistic")  # what each of these verbs builds
    task = registry.get(config.task, config.task_config())
    assert len(task.train_data.client_ids) == 6  # the fixture, via the shared copy
    assert os.path.isfile(shared_only / "emnist_all.sqlite")


def test_bench_finds_the_shared_data_without_downloading(shared_only):
    from experiments.benchmark import data

    assert data.real_data_folder("") == str(shared_only)


def test_vocab_finds_the_shared_text_data_and_its_counts(shared_only):
    from tasks import stackoverflow_vocab

    assert stackoverflow_vocab._folder(None) == str(shared_only)
    assert os.path.isfile(shared_only / "stackoverflow.word_count")
    assert stackoverflow_vocab.read_words(None, 1)

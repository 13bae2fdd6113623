"""StackOverflow vocabulary files: our own reader, and a builder from the train split.

TFF's `stackoverflow.load_word_counts` / `load_tag_counts` always fetch their
files through a hash-checked download, which fails offline even when the
files sit in the cache dir. The formats are simple, so we read them directly
from `--data_dir`:

- `stackoverflow.word_count`: `word<TAB>count` per line, most frequent first;
  count = distinct train users with the word in a train example's tokens.
- `stackoverflow.tag_count`: JSON `{tag: count}`; count = distinct train users
  with a train example carrying the tag. Read in decreasing count (ties in
  file order), as TFF does.

When they are absent, `./run.sh vocab --data_dir=DIR` (this module as a
binary) builds both from the train split of `DIR/stackoverflow.sqlite` by the
same definition; ties are ordered alphabetically.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter, defaultdict

from absl import flags

from experiments.core import binary
from experiments.core.errors import UsageError
from experiments.core.results import atomic_write
from tasks import data_files

DATA_FILE = "stackoverflow.sqlite"
WORD_COUNT_FILE = "stackoverflow.word_count"
TAG_COUNT_FILE = "stackoverflow.tag_count"


def _missing(path: str, folder: str) -> UsageError:
    return UsageError(
        f"{path} not found (TFF's copy only comes from a hash-checked download); build it "
        f"from the train split with: ./run.sh vocab --data_dir={folder}")


def _folder(data_dir: str | None) -> str:
    """Where the count files live: beside stackoverflow.sqlite as every command finds
    it (tasks.data_files), else in the folder a download would go to."""
    found = data_files.find(data_dir, DATA_FILE)
    return os.path.dirname(found) if found else data_files.chosen_dir(data_dir)


def read_words(data_dir: str | None, vocab_size: int) -> list[str]:
    """The `vocab_size` most frequent words (fewer if the file has fewer)."""
    folder = _folder(data_dir)
    path = os.path.join(folder, WORD_COUNT_FILE)
    if not os.path.isfile(path):
        raise _missing(path, folder)
    words: list[str] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if len(words) >= vocab_size:
                break
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise UsageError(
                    f"{path}:{number}: expected 'word<TAB>count', got {line.strip()[:60]!r}; "
                    f"rebuild it with: ./run.sh vocab --data_dir={folder} --overwrite")
            words.append(parts[0])
    if not words:
        raise UsageError(f"{path} holds no words; rebuild it with: ./run.sh vocab "
                         f"--data_dir={folder} --overwrite")
    return words


def read_tags(data_dir: str | None, tag_vocab_size: int) -> list[str]:
    """The `tag_vocab_size` most frequent tags (ties in file order, as TFF sorts)."""
    folder = _folder(data_dir)
    path = os.path.join(folder, TAG_COUNT_FILE)
    if not os.path.isfile(path):
        raise _missing(path, folder)
    try:
        with open(path, encoding="utf-8") as f:
            counts = json.load(f)
        if not isinstance(counts, dict) or not counts or not all(
                isinstance(v, int) for v in counts.values()):
            raise ValueError("not a non-empty JSON object of integer counts")
    except ValueError as e:
        raise UsageError(
            f"{path} is not a tag count file ({str(e).splitlines()[0][:80]}); rebuild it "
            f"with: ./run.sh vocab --data_dir={folder} --overwrite") from None
    ordered = sorted(counts.items(), key=lambda item: item[1], reverse=True)
    return [tag for tag, _ in ordered[:tag_vocab_size]]


def _feature(example, name: str) -> str:
    return example.features.feature[name].bytes_list.value[0].decode("utf-8", "replace")


def count(path: str) -> tuple[dict[str, int], dict[str, int]]:
    """(word counts, tag counts) of the train split: distinct users per word / tag."""
    import tensorflow as tf  # here: reading the count files needs no TensorFlow

    words: dict[str, set[str]] = defaultdict(set)
    tags: dict[str, set[str]] = defaultdict(set)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        rows = connection.execute(
            "SELECT client_id, serialized_example_proto FROM examples "
            "WHERE split_name = 'train'")
        for client_id, proto in rows:
            example = tf.train.Example.FromString(proto)
            words[client_id].update(_feature(example, "tokens").split())
            tags[client_id].update(t for t in _feature(example, "tags").split("|") if t)

    def users_per_key(per_user: dict[str, set[str]]) -> dict[str, int]:
        counter = Counter(key for keys in per_user.values() for key in keys)
        return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))

    return users_per_key(words), users_per_key(tags)


def write(data_dir: str | None, overwrite: bool = False) -> tuple[str, str]:
    """Builds both files next to `stackoverflow.sqlite`; returns their paths."""
    folder = _folder(data_dir)
    targets = (os.path.join(folder, WORD_COUNT_FILE), os.path.join(folder, TAG_COUNT_FILE))
    existing = [p for p in targets if os.path.exists(p)]
    if existing and not overwrite:
        raise UsageError(f"{existing[0]} exists; pass --overwrite to rebuild it")
    word_counts, tag_counts = count(data_files.resolve(data_dir, DATA_FILE))
    if not word_counts:
        raise UsageError(f"{os.path.join(folder, DATA_FILE)} has no train examples to "
                         f"count words in")
    lines = "".join(f"{w}\t{c}\n" for w, c in word_counts.items())
    atomic_write(targets[0], lines.encode("utf-8"))
    atomic_write(targets[1], json.dumps(tag_counts, indent=0).encode("utf-8"))
    return targets


def _vocab() -> None:
    for path in write(flags.FLAGS.data_dir or None, flags.FLAGS.overwrite):
        print(f"wrote {path}")


def define_flags() -> None:
    """The binary's flags (defined only when run: the task modules import this one)."""
    flags.DEFINE_string("data_dir", "", "Folder holding stackoverflow.sqlite (default: "
                        "$TFF_DATA_DIR, else ~/.tff); the count files are written there.")
    flags.DEFINE_bool("overwrite", False, "Replace existing count files.")


if __name__ == "__main__":
    define_flags()
    binary.run("vocab", _vocab, tensorflow=False)

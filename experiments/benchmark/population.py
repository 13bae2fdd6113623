"""Cost against population size: does a run's memory follow the cohort, not the population?

Synthetic StackOverflow-layout populations (tasks.stackoverflow_synthetic, the
same generator and parameters but the number of users; generated once into
`.cache/populations/`) are converted into the client store once (its
throughput and size on disk reported), then `stackoverflow_word` trains on
each in a fresh process (experiments.benchmark.population_run) from the
store (`--data_store=disk`) and from the whole split parsed into memory
(`--data_store=memory`, up to --population_memory_max users). Same seed, so
both stores train the same clients in the same rounds. At the largest
population the memory path runs on, one more process builds both and
alternates their rounds: separate processes' round times drift by 10-20%
with the machine's load, too much to compare two paths within 5%.

Headline numbers per cohort: the store's resident memory at the largest
population over the smallest's (flat: within 10%), and its round time (wall
and CPU) over the in-memory path's at the largest population both ran.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable

from experiments.benchmark.population_run import MODEL, TASK
from experiments.benchmark.timing import ratio
from experiments.core.errors import UsageError
from experiments.core.paths import CACHE_DIR, REPO_ROOT
from tasks import (
    client_store,
    stackoverflow,
    stackoverflow_synthetic,
    stackoverflow_vocab,
    stackoverflow_word,
)

MEAN_SENTENCES = 120.0  # per training user (at least 100); the real data's is 396.6
CHILD_TIMEOUT = 4 * 3600


def population_folder(clients: int) -> str:
    """Where the synthetic population of `clients` users is generated."""
    return os.path.join(CACHE_DIR, "populations", f"stackoverflow_synthetic_{clients}")


def _generated(folder: str, expected: dict) -> bool:
    path = os.path.join(folder, stackoverflow_vocab.DATA_FILE)
    if not os.path.exists(path):
        return False
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (stored,) = db.execute("SELECT parameters FROM synthetic").fetchone()
    return json.loads(stored) == json.loads(json.dumps(expected))


def ensure_population(clients: int, progress: Callable[[str], None]) -> dict:
    """Generates the population if it is not there yet; its folder and generation time."""
    folder = population_folder(clients)
    parameters = stackoverflow_synthetic.parameters(clients, MEAN_SENTENCES)
    if _generated(folder, parameters):
        return {"folder": folder, "generated_now": False}
    progress(f"population {clients:,}: generating the synthetic file (about "
             f"{clients * (MEAN_SENTENCES + 0.6 * 81.3) / 1e4 / 60:.0f} min at 10,000 "
             f"rows/s)")
    began = time.monotonic()
    stackoverflow_synthetic.write(folder, parameters)
    return {"folder": folder, "generated_now": True,
            "generation_seconds": time.monotonic() - began}


def ensure_store(folder: str) -> dict:
    """Builds the client store of the population's train and test splits (once); the
    conversion's records and examples per second and the size on disk, per split."""
    path = os.path.join(folder, stackoverflow_vocab.DATA_FILE)
    vocab = stackoverflow_vocab.read_words(folder, 10_000)
    preparation = stackoverflow_word.preparation(vocab, stackoverflow.DEFAULT_SEQUENCE_LENGTH)
    conversion = {}
    for split in ("train", "test"):
        client_store.load(path, split, preparation)
        meta = client_store.read_meta(client_store.store_folder(path, split, preparation))
        conversion[split] = {key: meta[key] for key in (
            "records", "examples", "clients", "build_seconds", "records_per_second",
            "examples_per_second", "bytes")}
    conversion["source_bytes"] = os.path.getsize(path)
    return conversion


def run_child(folder: str, data_store: str, cohorts: tuple[int, ...], warmup: int,
              rounds: int) -> dict:
    """One population_run process; its JSON result."""
    command = [sys.executable, "-m", "experiments.benchmark.population_run",
               f"--data_dir={folder}", f"--data_store={data_store}",
               f"--cohorts={','.join(str(c) for c in cohorts)}",
               f"--warmup_rounds={warmup}", f"--rounds={rounds}"]
    began = time.monotonic()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT, env={**os.environ, "PYTHONPATH": REPO_ROOT})
    if done.returncode != 0:
        raise UsageError(f"population run on {folder} ({data_store}) failed with exit "
                         f"code {done.returncode}: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.monotonic() - began
    return result


def _cohort_rss(run: dict, cohort: int) -> float:
    return run["cohorts"][str(cohort)]["rss_mib"]["total_mib"]


def headline(runs: dict[int, dict[str, dict]], cohorts: tuple[int, ...]) -> dict:
    """Per cohort: the store's memory largest / smallest population, and at the largest
    population the memory path ran on, the store's round time over the memory path's
    (the paired run's median round-by-round ratio) and its memory over the memory path's."""
    sizes = sorted(runs)
    smallest, largest = sizes[0], sizes[-1]
    both = [n for n in sizes if "memory" in runs[n]]
    out: dict[str, dict] = {}
    for cohort in cohorts:
        key = str(cohort)
        row: dict = {"rss_largest_over_smallest": ratio(
            _cohort_rss(runs[largest]["disk"], cohort),
            _cohort_rss(runs[smallest]["disk"], cohort))}
        if both:
            at = both[-1]
            paired = runs[at]["paired"]["cohorts"][key]
            row.update(compared_at=at,
                       round_seconds_disk_over_memory=paired["round_seconds_disk_over_memory"],
                       round_cpu_disk_over_memory=paired["round_cpu_disk_over_memory"],
                       total_seconds_disk_over_memory=paired.get(
                           "total_seconds_disk_over_memory"),
                       paired_rounds=paired.get("measured_rounds"),
                       rss_disk_over_memory=ratio(_cohort_rss(runs[at]["disk"], cohort),
                                                  _cohort_rss(runs[at]["memory"], cohort)))
        out[key] = row
    return out


def measure_populations(populations: tuple[int, ...], cohorts: tuple[int, ...],
                        warmup: int, rounds: int, memory_max: int,
                        progress: Callable[[str], None]) -> dict:
    """The population section of bench.json (see the module docstring)."""
    generated, conversion, runs = {}, {}, {}
    for clients in populations:
        generated[str(clients)] = ensure_population(clients, progress)
        folder = generated[str(clients)]["folder"]
        progress(f"population {clients:,}: client store")
        conversion[str(clients)] = ensure_store(folder)
        runs[clients] = {}
        if clients == max([n for n in populations if n <= memory_max], default=None):
            progress(f"population {clients:,}: both stores, rounds alternating")
            runs[clients]["paired"] = run_child(folder, "paired", cohorts, warmup, rounds)
        for data_store in ("disk", "memory") if clients <= memory_max else ("disk",):
            progress(f"population {clients:,}: training from --data_store={data_store}")
            runs[clients][data_store] = run_child(folder, data_store, cohorts, warmup, rounds)
    return {"task": TASK, "model": MODEL, "mean_sentences": MEAN_SENTENCES,
            "populations": list(populations), "cohorts": list(cohorts),
            "warmup_rounds": warmup, "rounds": rounds, "memory_max": memory_max,
            "generated": generated, "conversion": conversion,
            "runs": {str(n): r for n, r in runs.items()},
            "headline": headline(runs, cohorts)}

"""The benchmark binary's output structure, on a tiny quick run (no timing checks).

Speed numbers belong to `python -m experiments.bench` only: here it runs on
the tiny EMNIST fixture (cohorts 2 and 3, one round, memory rounds 1 and 2)
and only the shape of bench.json / bench.md is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from experiments.benchmark import machine
from experiments.core.paths import REPO_ROOT


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_quick_run_writes_json_and_markdown_with_every_key(emnist_dir: str,
                                                             tmp_path) -> None:
    output = tmp_path / "bench.json"
    command = [sys.executable, "-m", "experiments.bench", f"--data_dir={emnist_dir}",
               "--cohorts=2,3", "--warmup_rounds=0", "--rounds=1", "--memory_round_a=1",
               "--memory_round_b=2", "--memory_dp_cohort=3", "--populations=",
               f"--output={output}"]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    result = json.loads(output.read_text())
    for key in ("machine", "data", "settings", "federated", "centralized",
                "ratio_to_centralized", "per_client_overhead_ms", "memory",
                "memory_growth_percent", "dp_overhead_ratio",
                "compression_overhead_ratio"):
        assert key in result, key
    for key in ("nproc", "cpu_model", "python", "tensorflow", "tensorflow_federated"):
        assert result["machine"][key], key
    assert 0 <= result["machine"]["cpu_steal_percent"] <= 100
    assert result["data"]["name"] == "EMNIST (6 writers)"
    assert set(result["ratio_to_centralized"]) == {"2", "3"}
    assert all(_is_number(r) and r > 0 for r in result["ratio_to_centralized"].values())
    assert set(result["cpu_ratio_to_centralized"]) == {"2", "3"}
    for cohort in ("2", "3"):
        federated = result["federated"][cohort]
        assert _is_number(federated["median_round_seconds"])
        assert _is_number(federated["examples_per_second"])
        assert len(federated["round_seconds"]) == 1
        assert 0 <= federated["cpu_steal_percent"] <= 100
        # Main process + worker during the round; the worker did the training.
        assert federated["cpu_seconds"][0] > 0
        # The reference trained on exactly the federated round's examples.
        assert result["centralized"][cohort]["same_examples_as_federated"] is True
    assert result["centralized_traces"] == 1
    assert _is_number(result["per_client_overhead_ms"])
    split = result["client_split"]
    assert split["cohort"] == 3 and len(split["split_seconds"]) == 1
    assert _is_number(result["fixed_overhead_ms_per_client"])
    assert result["one_client_over_centralized"] > 0
    assert len(result["tff_stock"]["seconds"]["tff_stock"]) == 1
    assert result["ours_over_tff_stock"] > 0
    memory = result["memory"]
    assert (memory["round_a"], memory["round_b"]) == (1, 2)
    assert memory["rss_a"]["worker_mib"] > 0 and memory["rss_b"]["main_mib"] > 0
    assert _is_number(result["memory_growth_percent"])
    assert _is_number(result["dp_overhead_ratio"])
    # Flower runs only with --flower (its keys are there, empty).
    assert result["flower"] is None and result["speedup_vs_flower"] is None
    assert result["population"] is None  # --populations= skips it (population_test.py)
    assert "flower_round_seconds" in result
    assert _is_number(result["compression_overhead_ratio"])
    methods = result["compression"]["methods"]
    assert set(methods) == {"quantize", "rotate_quantize", "random_mask", "low_rank"}
    assert all(_is_number(m["fraction_of_round"]) for m in methods.values())

    table = (tmp_path / "bench.md").read_text()
    assert "| ratio to centralised | CPU-time ratio | CPU steal % |" in table
    assert "EMNIST (6 writers)" in table
    assert table in done.stdout


def test_cpu_steal_is_read_from_proc_stat(tmp_path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 50 0 25 400 5 0 0 20 0 0\n")
    start = machine.cpu_ticks(str(stat))
    assert start == (40, 1000)
    stat.write_text("cpu  160 0 60 900 10 0 0 70 5 0\n")  # +100 busy/idle, +30 stolen
    assert machine.steal_percent(start, machine.cpu_ticks(str(stat))) == 100.0 * 30 / 200
    assert machine.cpu_ticks(str(tmp_path / "absent")) is None
    assert machine.steal_percent(None, start) is None


def test_cpu_seconds_of_a_busy_process_grow_and_of_none_are_zero() -> None:
    before = machine.cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert machine.cpu_seconds(os.getpid()) - before >= 0.2
    assert machine.cpu_seconds(None) == 0.0
    assert machine.cpu_seconds(2**22 + 12345) == 0.0  # no such process

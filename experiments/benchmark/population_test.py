"""The benchmark's population section: one real run on a small synthetic population, and
the headline ratios and table from known numbers (no timing checks)."""

from __future__ import annotations

import pytest

from experiments.benchmark import population, report


@pytest.fixture(scope="module")
def small_population() -> str:
    """A 24-user synthetic StackOverflow-layout population (generated once, cached)."""
    return population.ensure_population(24, lambda message: None)["folder"]


def test_a_population_run_from_the_store_reports_every_number(small_population: str
                                                              ) -> None:
    conversion = population.ensure_store(small_population)
    assert conversion["train"]["clients"] == 24 and conversion["train"]["bytes"] > 0
    assert conversion["train"]["examples"] == conversion["train"]["records"]
    run = population.run_child(small_population, "disk", (2,), 0, 1)
    assert run["train_clients"] == 24
    cohort = run["cohorts"]["2"]
    assert cohort["median_round_seconds"] > 0 and cohort["median_round_cpu_seconds"] > 0
    assert cohort["first_round_start_seconds"] >= run["task_build_seconds"] > 0
    assert cohort["rss_mib"]["worker_mib"] > 0 and run["peak_main_mib"] > 0


def _run(rss: float, seconds: float, cpu: float) -> dict:
    return {"cohorts": {"10": {"rss_mib": {"total_mib": rss}, "median_round_seconds": seconds,
                               "median_round_cpu_seconds": cpu,
                               "first_round_start_seconds": 1.0}}}


def test_headline_ratios_compare_like_with_like() -> None:
    runs = {300: {"disk": _run(1000, 2.0, 4.0), "memory": _run(1100, 2.2, 4.4)},
            30_000: {"disk": _run(1010, 2.0, 4.0), "memory": _run(3000, 1.6, 3.2),
                     "paired": {"cohorts": {"10": {"round_seconds_disk_over_memory": 1.02,
                                                   "round_cpu_disk_over_memory": 0.99,
                                                   "total_seconds_disk_over_memory": 1.01,
                                                   "measured_rounds": 30}}}},
            100_000: {"disk": _run(1050, 2.1, 4.2)}}
    headline = population.headline(runs, (10,))["10"]
    assert headline["rss_largest_over_smallest"] == pytest.approx(1.05)  # disk, 100k / 300
    assert headline["compared_at"] == 30_000  # the largest population memory ran on
    # Round times from the paired run (alternating rounds), not the separate runs.
    assert headline["round_seconds_disk_over_memory"] == pytest.approx(1.02)
    assert headline["round_cpu_disk_over_memory"] == pytest.approx(0.99)
    assert headline["rss_disk_over_memory"] == pytest.approx(1010 / 3000)
    section = {"task": "t", "model": "m", "mean_sentences": 120.0, "rounds": 3,
               "warmup_rounds": 1, "headline": population.headline(runs, (10,)),
               "runs": {str(n): r for n, r in runs.items()},
               "conversion": {"300": {s: {"records": 10, "records_per_second": 5.0,
                                          "bytes": 2**20} for s in ("train", "test")}
                              | {"source_bytes": 2**21}}}
    lines = report._population_tables({"population": section})
    assert headline["paired_rounds"] == 30
    assert "| 10 | 1.050 | 30000 | 30 | 1.020 | 1.010 | 0.990 | 0.337 |" in lines
    assert "| 100,000 | disk | 10 | 1.0 | 2.10 | 4.20 | 1,050 |" in lines

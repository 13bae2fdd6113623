"""The benchmark's result as a markdown table: one row per cohort, then one per measure.

The table is written beside the JSON (same name, .md) and printed; a missing
number shows as `n/a`, a skipped measurement as `skipped`.
"""

from __future__ import annotations


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _header(result: dict) -> list[str]:
    """The title and the line of context: machine, versions, load, steal, rounds."""
    m, d = result["machine"], result["data"]
    return [
        f"# Benchmark: FedAvg {result['settings']['model']} on {d['name']}",
        "",
        f"{m['nproc']} cores ({m['cpu_model']}), Python {m['python']}, "
        f"TF {m['tensorflow']}, TFF {m['tensorflow_federated']}; load average "
        f"{m['loadavg_at_start'][0]:.1f} at start, {m['loadavg_at_end'][0]:.1f} at end; "
        f"CPU time stolen by the hypervisor {_fmt(m.get('cpu_steal_percent'), '.1f')}%. "
        f"Medians of {result['settings']['rounds']} rounds after "
        f"{result['settings']['warmup_rounds']} warm-up rounds.",
        "",
    ]


def _cohort_table(result: dict) -> list[str]:
    """One row per cohort size: federated against centralised."""
    lines = [
        "| cohort | federated s/round | examples/round | federated examples/s "
        "| builder.next s | other s | centralised s | centralised examples/s "
        "| ratio to centralised | CPU-time ratio | CPU steal % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result["settings"]["cohorts"]:
        f, r = result["federated"][str(c)], result["centralized"][str(c)]
        lines.append(
            f"| {c} | {_fmt(f['median_round_seconds'], '.3f')} "
            f"| {_fmt(f['median_examples_per_round'], '.0f')} "
            f"| {_fmt(f['examples_per_second'], '.0f')} "
            f"| {_fmt(f['median_process_next_seconds'], '.3f')} "
            f"| {_fmt(f['median_other_seconds'], '.3f')} "
            f"| {_fmt(r['median_seconds'], '.3f')} "
            f"| {_fmt(r['examples_per_second'], '.0f')} "
            f"| {_fmt(result['ratio_to_centralized'][str(c)], '.2f')} "
            f"| {_fmt(result['cpu_ratio_to_centralized'][str(c)], '.2f')} "
            f"| {_fmt(f.get('cpu_steal_percent'), '.1f')} |")
    return lines


def _overhead_rows(result: dict) -> list[str]:
    """Per-client overhead, the client split and TFF's stock FedAvg."""
    o, split, stock = result["overhead"], result["client_split"], result["tff_stock"]
    return [
        f"| per-client fixed overhead (ms) | "
        f"{_fmt(result['per_client_overhead_ms'], '.1f')} |",
        f"| federated slope (ms per client) | "
        f"{_fmt(o['federated_slope_ms_per_client'], '.1f')} |",
        f"| centralised compute per mean client (ms) | "
        f"{_fmt(o.get('centralized_ms_per_client'), '.1f')} |",
        f"| fixed cost per extra client, same examples as {split['cohort']} clients "
        f"or 1 (ms) | {_fmt(split['fixed_overhead_ms_per_client'], '.1f')} |",
        f"| one client / centralised loop, same examples | "
        f"{_fmt(split['one_client_over_centralized'], '.2f')} |",
        f"| our FedAvg round / TFF's stock FedAvg round, cohort {stock['cohort']} | "
        f"{_fmt(stock['ours_over_tff_stock'], '.2f')} |",
        f"| TFF's stock FedAvg round / centralised loop | "
        f"{_fmt(stock['tff_stock_ratio_to_centralized'], '.2f')} |",
    ]


def _memory_rows(result: dict) -> list[str]:
    """RSS at the two rounds and the growth between them (or `skipped`)."""
    mem = result["memory"]
    if mem is None:
        return ["| memory growth (%) | skipped |"]
    return [
        f"| RSS main + worker at round {mem['round_a']} (MiB) | "
        f"{_fmt(mem['rss_a']['total_mib'], '.0f')} |",
        f"| RSS main + worker at round {mem['round_b']} (MiB) | "
        f"{_fmt(mem['rss_b']['total_mib'], '.0f')} |",
        f"| memory growth (%) | {_fmt(result['memory_growth_percent'], '.1f')} |"]


def _cost_rows(result: dict) -> list[str]:
    """DP and compression overheads, and each codec's share of a round."""
    lines = [f"| DP overhead ratio (fixed clip, z=1, cohort {result['dp']['cohort']}) | "
             f"{_fmt(result['dp_overhead_ratio'], '.2f')} |",
             f"| compression overhead ratio (rotate_quantize 2 bits, round / plain round) | "
             f"{_fmt(result['compression_overhead_ratio'], '.2f')} |"]
    for name, m in result["compression"].get("methods", {}).items():
        lines.append(f"| {name} encode + decode x cohort / plain round | "
                     f"{_fmt(m['fraction_of_round'], '.3f')} |")
    return lines


def _flower_rows(result: dict) -> list[str]:
    """Flower's round, ours on the same clients, and the speed-up (none without --flower)."""
    flower = result.get("flower")
    if flower is None:
        return []
    c = flower["cohort"]
    return [f"| Flower {flower['flower'].get('flwr', '')} simulation s/round "
            f"(cohort {c}, Ray, Keras clients) | "
            f"{_fmt(flower['flower_round_seconds'], '.3f')} |",
            f"| ours s/round, same clients, right after | "
            f"{_fmt(flower['our_round_seconds'], '.3f')} |",
            f"| speedup vs Flower | {_fmt(flower['speedup_vs_flower'], '.2f')} |"]


def _population_tables(result: dict) -> list[str]:
    """The population section: conversion, then each run, then the headline ratios."""
    p = result.get("population")
    if p is None:
        return []
    lines = ["", f"## Cost against population ({p['task']}, {p['model']}, synthetic "
             f"StackOverflow layout, {p['mean_sentences']:.0f} sentences per user on "
             f"average; medians of {p['rounds']} rounds after {p['warmup_rounds']})", "",
             "| users | split | records | conversion records/s | store MiB | source MiB |",
             "|---:|---|---:|---:|---:|---:|"]
    for n, conversion in p["conversion"].items():
        for split in ("train", "test"):
            c = conversion[split]
            lines.append(f"| {int(n):,} | {split} | {c['records']:,} "
                         f"| {_fmt(c['records_per_second'], ',.0f')} "
                         f"| {c['bytes'] / 2**20:,.0f} "
                         f"| {conversion['source_bytes'] / 2**20:,.0f} |")
    lines += ["", "| users | --data_store | cohort | first round starts (s) | round s "
              "| round CPU s | RSS main + worker (MiB) |", "|---:|---|---:|---:|---:|---:|---:|"]
    for n, stores in p["runs"].items():
        for store, run in stores.items():
            if store == "paired":  # its round-time ratios are in the headline below
                continue
            for cohort, c in run["cohorts"].items():
                lines.append(f"| {int(n):,} | {store} | {cohort} "
                             f"| {_fmt(c['first_round_start_seconds'], '.1f')} "
                             f"| {_fmt(c['median_round_seconds'], '.2f')} "
                             f"| {_fmt(c['median_round_cpu_seconds'], '.2f')} "
                             f"| {_fmt(c['rss_mib']['total_mib'], ',.0f')} |")
    lines += ["", "| cohort | store RSS, largest / smallest population | compared at "
              "| paired rounds | store / memory round s (median of paired) "
              "| store / memory total s | store / memory round CPU s (median of paired) "
              "| store / memory RSS |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for cohort, h in p["headline"].items():
        lines.append(f"| {cohort} | {_fmt(h['rss_largest_over_smallest'], '.3f')} "
                     f"| {h.get('compared_at', 'n/a')} | {h.get('paired_rounds', 'n/a')} "
                     f"| {_fmt(h.get('round_seconds_disk_over_memory'), '.3f')} "
                     f"| {_fmt(h.get('total_seconds_disk_over_memory'), '.3f')} "
                     f"| {_fmt(h.get('round_cpu_disk_over_memory'), '.3f')} "
                     f"| {_fmt(h.get('rss_disk_over_memory'), '.3f')} |")
    return lines


def markdown(result: dict) -> str:
    """The results as a markdown table (plus one line of context)."""
    lines = [*_header(result), *_cohort_table(result),
             "", "| measure | value |", "|---|---:|",
             *_overhead_rows(result), *_memory_rows(result), *_cost_rows(result),
             *_flower_rows(result), *_population_tables(result)]
    return "\n".join(lines) + "\n"

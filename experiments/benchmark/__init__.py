"""`./run.sh bench`: speed and memory of the federated stack, ratios measured in one run.

- `suite`: `run(settings)`, every measurement in one process, into bench.json's dict.
- `settings`: the fixed task, model and seed, and `Settings` (the checked flags).
- `configs`: the `ExperimentConfig` of each benchmark run.
- `data`: the real EMNIST file if there is one, else synthetic FEMNIST-300-shaped clients.
- `reference`: the compiled centralised loop every federated time is set against.
- `cohorts`: federated rounds per cohort size vs the centralised loop; cost per client.
- `client_overhead`: a client's fixed cost with the compute held constant; ours vs
  TFF's stock FedAvg.
- `dp_cost`, `compression_cost`, `memory_growth`: DP and compression overheads,
  resident memory over a long run.
- `flower_comparison`: the same rounds under Flower (`flower` runs the peer,
  `flower_peer` is the peer itself, run in Flower's own venv).
- `machine`: CPU model, stolen CPU time, CPU seconds and RSS from /proc.
- `timing`: medians, ratios, timers, interleaved rounds, the progress line.
- `report`: the markdown table.

The binary `experiments/bench.py` reads the flags and writes the files.
Modules are imported directly; the package re-exports nothing.
"""

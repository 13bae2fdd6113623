"""The benchmark's FedAvg task under Flower's simulation engine, for a side-by-side number.

`experiments.bench` runs this file as a subprocess with the Python of the
separate `.venv-flower` (flwr[simulation] with its Ray backend and the same
TensorFlow, pinned in requirements-flower.txt; flwr's grpcio/protobuf needs
never touch the main venv). It therefore imports nothing from the project:
only flwr, tensorflow and numpy. Everything it trains on comes in one .npz
written by the bench:

- `model_json` and `weight_0..weight_{k-1}`: the Keras model (cnn_dropout)
  and its initial weights, exactly ours;
- `x`, `y`, `starts`, `sizes`: the examples of each round's clients, round
  after round; client slot `p` of round `r` trains on
  `x[starts[r-1, p] : starts[r-1, p] + sizes[r-1, p]]` (the same clients,
  in the same rounds, as our FederatedTrainer chose);
- `learning_rate`, `batch_size`, `epochs`, `warmup_rounds`.

Flower runs `cohort` virtual clients (one per slot), all of them in every
round (FedAvg, fraction_fit=1, no evaluation), as Keras clients in the
usual Flower way: one compiled model per Ray actor, `set_weights`, then
`model.fit(x, y, batch_size, epochs, shuffle=True)` with SGD. A round's time
is from the strategy's `configure_fit` to the end of its `aggregate_fit`
(dispatch, client training, transfer and aggregation). The JSON written to
`--output` has the per-round seconds and the median over the rounds after
the warm-up ones.

    .venv-flower/bin/python experiments/benchmark/flower_peer.py --data=peer.npz \\
        --output=flower.json [--cpus_per_client=1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # no network here
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import types  # noqa: E402

import numpy as np  # noqa: E402


def _cache() -> types.ModuleType:
    """This process's cache (the .npz, the compiled model), kept in sys.modules.

    Ray ships `client_fn` to its actors by value (this file runs as __main__),
    with a fresh copy of its globals on every call, so module globals cannot
    cache anything there; an entry in the actor's sys.modules lasts as long
    as the actor. Without it every fit would reload the data, rebuild and
    recompile the model and retrace Keras' train function.
    """
    name = "_bench_flower_peer_cache"
    if name not in sys.modules:
        cache = types.ModuleType(name)
        cache.data, cache.model = None, None
        sys.modules[name] = cache
    return sys.modules[name]


def load_data(path: str) -> dict:
    """The .npz as a dict of arrays, loaded once per process."""
    cache = _cache()
    if cache.data is None:
        with np.load(path, allow_pickle=False) as archive:
            cache.data = {key: archive[key] for key in archive.files}
    return cache.data


def initial_weights(data: dict) -> list[np.ndarray]:
    """The model's initial weights in Keras order."""
    count = sum(1 for key in data if key.startswith("weight_"))
    return [data[f"weight_{i}"] for i in range(count)]


def compiled_model(data: dict):
    """This actor's Keras model, built from the JSON and compiled once."""
    cache = _cache()
    if cache.model is None:
        import tensorflow as tf

        model = tf.keras.models.model_from_json(str(data["model_json"]))
        model.compile(
            optimizer=tf.keras.optimizers.SGD(float(data["learning_rate"])),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"])
        cache.model = model
    return cache.model


def client_arrays(data: dict, round_num: int, slot: int) -> tuple[np.ndarray, np.ndarray]:
    """The examples client slot `slot` holds in round `round_num` (1-based)."""
    start = int(data["starts"][round_num - 1, slot])
    size = int(data["sizes"][round_num - 1, slot])
    return data["x"][start:start + size], data["y"][start:start + size]


def make_client_fn(path: str):
    """Flower's client factory: a NumPyClient training the slot's examples."""
    import flwr as fl

    class KerasClient(fl.client.NumPyClient):
        def __init__(self, slot: int):
            self.slot = slot

        def get_parameters(self, config):
            return initial_weights(load_data(path))

        def fit(self, parameters, config):
            data = load_data(path)
            built = _cache().model is None
            model = compiled_model(data)
            model.set_weights(parameters)
            x, y = client_arrays(data, int(config["round"]), self.slot)
            history = model.fit(x, y, batch_size=int(data["batch_size"]),
                                epochs=int(data["epochs"]), shuffle=True, verbose=0)
            return model.get_weights(), len(x), {"loss": float(history.history["loss"][-1]),
                                                 "built": int(built)}

    def client_fn(context):
        return KerasClient(int(context.node_config["partition-id"])).to_client()

    return client_fn


def timed_fedavg(initial: list[np.ndarray], cohort: int):
    """FedAvg that records when each round's fit phase starts and ends."""
    import flwr as fl

    def weighted_loss(metrics):
        total = sum(n for n, _ in metrics)
        return {"loss": sum(n * m["loss"] for n, m in metrics) / total if total else 0.0,
                "built": sum(int(m["built"]) for _, m in metrics)}

    class TimedFedAvg(fl.server.strategy.FedAvg):
        def __init__(self):
            super().__init__(
                fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=cohort,
                min_evaluate_clients=0, min_available_clients=cohort,
                on_fit_config_fn=lambda r: {"round": r},
                initial_parameters=fl.common.ndarrays_to_parameters(initial),
                fit_metrics_aggregation_fn=weighted_loss)
            self.began: dict[int, float] = {}
            self.ended: dict[int, float] = {}
            self.examples: dict[int, int] = {}
            self.loss: dict[int, float] = {}
            self.builds: dict[int, int] = {}
            self.failures = 0

        def configure_fit(self, server_round, parameters, client_manager):
            self.began[server_round] = time.perf_counter()
            return super().configure_fit(server_round, parameters, client_manager)

        def aggregate_fit(self, server_round, results, failures):
            out = super().aggregate_fit(server_round, results, failures)
            self.ended[server_round] = time.perf_counter()
            self.failures += len(failures)
            self.examples[server_round] = sum(r.num_examples for _, r in results)
            self.loss[server_round] = float(out[1].get("loss", float("nan")))
            self.builds[server_round] = int(out[1].get("built", 0))
            return out

    return TimedFedAvg()


def run(path: str, cpus_per_client: float) -> dict:
    """Runs the simulation; returns the JSON-able timings."""
    import flwr as fl
    import ray
    import tensorflow as tf

    data = load_data(path)
    rounds, cohort = data["sizes"].shape
    warmup = int(data["warmup_rounds"])
    strategy = timed_fedavg(initial_weights(data), cohort)
    cpus = len(os.sched_getaffinity(0))
    began = time.perf_counter()
    fl.simulation.start_simulation(
        client_fn=make_client_fn(path), num_clients=cohort,
        config=fl.server.ServerConfig(num_rounds=rounds), strategy=strategy,
        client_resources={"num_cpus": cpus_per_client, "num_gpus": 0.0},
        ray_init_args={"num_cpus": cpus, "include_dashboard": False,
                       "ignore_reinit_error": True, "log_to_driver": False,
                       "object_store_memory": 256 * 1024 * 1024})
    total = time.perf_counter() - began
    if ray.is_initialized():
        ray.shutdown()
    seconds = [strategy.ended[r] - strategy.began[r] for r in range(1, rounds + 1)
               if r in strategy.ended]
    measured = seconds[warmup:]
    return {
        "flwr": fl.__version__ if hasattr(fl, "__version__") else "unknown",
        "ray": ray.__version__, "tensorflow": tf.__version__,
        "cohort": int(cohort), "rounds": int(rounds), "warmup_rounds": warmup,
        "cpus": cpus, "cpus_per_client": cpus_per_client,
        "parallel_clients": int(cpus // cpus_per_client),
        "round_seconds": seconds,
        "median_round_seconds": float(np.median(measured)) if measured else None,
        "round_examples": [strategy.examples.get(r) for r in range(1, rounds + 1)],
        "round_train_loss": [strategy.loss.get(r) for r in range(1, rounds + 1)],
        "model_builds": [strategy.builds.get(r) for r in range(1, rounds + 1)],
        "failures": strategy.failures,
        "total_seconds_with_startup": total,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flower_peer", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help=".npz written by experiments.bench")
    parser.add_argument("--output", required=True, help="JSON results file")
    parser.add_argument("--cpus_per_client", type=float, default=1.0,
                        help="Ray CPUs per virtual client (1: two clients at a time "
                             "on two cores)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.data):
        print(f"flower_peer: error: --data={args.data} does not exist", file=sys.stderr)
        return 2
    if args.cpus_per_client <= 0:
        print(f"flower_peer: error: --cpus_per_client={args.cpus_per_client} must be > 0",
              file=sys.stderr)
        return 2
    result = run(args.data, args.cpus_per_client)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

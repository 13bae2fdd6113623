"""The federated algorithm: one builder of TFF learning processes and its parts.

- `builder`: `build(config, task)`, the one process builder (FedAvg,
  unweighted FedAvg, FedProx composed from our parts; FedSGD is TFF's).
- `client_work`: the clients' local training (a bare SGD step per batch).
- `server_optimizer`: FedOpt's server optimizers and their settings.
- `split_round`: rounds whose client updates must be seen one by one
  (secure sum, update-side outliers), from the same parts.

Modules are imported directly (`from experiments.algorithms import builder`);
the package re-exports nothing, so importing a settings group stays cheap.
"""

"""SCAFFOLD rounds through TFF, checked against an independent numpy SCAFFOLD.

Softmax regression (the `logistic` model) on the EMNIST fixture, recomputed in
float64 numpy from the paper's equations (Karimireddy et al. 2020, Algorithm 1,
option II): each sampled client runs SGD from x over its exact, seeded batch
sequence with every gradient corrected by c - c_i, then c_i+ = c_i - c +
(x - y) / (K lr); the server steps x by lr_g times the mean of the clients'
moves and c by the sum of the control-variate changes over N. After each of
three chained rounds the global model, the server's c and every client's c_i
must match to 1e-5. The comparison has power: the rounds revisit clients (so
their own c_i is used), the correction moves the model far more than the
tolerance, and the same rounds with the correction's sign reversed, or with
FedAvg's plain step, are detected.

Also: the state's checkpoint layout round-trips, and the flags SCAFFOLD cannot
honour are refused in one line.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from experiments.algorithms.fedavg_numpy_test import ATOL, _client_batches, _forward, _trainer
from experiments.config import ExperimentConfig, validate
from experiments.core.errors import UsageError
from experiments.simulation import sampling

ROUNDS = 3


@pytest.fixture(scope="module")
def tff_worker() -> Iterator[None]:
    """One TFF worker for the whole module, stopped at its end."""
    from experiments.core import tff_worker

    with tff_worker.session():
        yield


def _numpy_round(task, config: ExperimentConfig, round_num: int, model: list,
                 control: list, clients: dict, population: int, sign: float = 1.0):
    """One SCAFFOLD round in float64; `clients` (index -> c_i) is updated in place.
    `sign` = -1 reverses the correction (a wrong implementation the test must catch)."""
    lr, server_lr = config.client_learning_rate, config.server_learning_rate
    chosen = sampling.sample_clients(population, config.clients_per_round, config.seed,
                                     round_num)
    moves, control_changes = [], []
    for index in chosen:
        c_i = clients.get(int(index), [np.zeros_like(p) for p in control])
        w, b = (p.copy() for p in model)
        batches = _client_batches(task, config, round_num, int(index))
        for x, y in batches:
            _, dlogits, _ = _forward(w, b, x, y)
            w -= lr * (x.T @ dlogits + sign * (control[0] - c_i[0]))
            b -= lr * (dlogits.sum(axis=0) + sign * (control[1] - c_i[1]))
        steps = len(batches)
        move = [model[0] - w, model[1] - b]
        new_c_i = [c - cs + m / (steps * lr) for c, cs, m in zip(c_i, control, move,
                                                                  strict=True)]
        moves.append(move)
        control_changes.append([n - o for n, o in zip(new_c_i, c_i, strict=True)])
        clients[int(index)] = new_c_i
    model = [p - server_lr * np.mean([m[k] for m in moves], axis=0)
             for k, p in enumerate(model)]
    control = [c + np.sum([d[k] for d in control_changes], axis=0) / population
               for k, c in enumerate(control)]
    return model, control, chosen


def test_scaffold_rounds_match_numpy(tff_worker, emnist_dir: str) -> None:
    config, task, trainer, state = _trainer(
        emnist_dir, algorithm="scaffold", clients_per_round=4, server_learning_rate=0.7,
        client_learning_rate=0.05)
    population = trainer.population
    model = [a.astype(np.float64) for a in trainer.model_weights(state)]
    control = [np.zeros_like(p) for p in model]
    clients: dict = {}
    plain = [p.copy() for p in model]
    seen: set[int] = set()
    revisited = False
    for round_num in range(1, ROUNDS + 1):
        state, row = trainer.run_round(state, round_num)
        before = [p.copy() for p in model]
        reversed_model, _, _ = _numpy_round(task, config, round_num, model, control,
                                            dict(clients), population, sign=-1.0)
        model, control, chosen = _numpy_round(task, config, round_num, model, control,
                                              clients, population)
        plain, _, _ = _numpy_round(task, config, round_num, plain,
                                   [np.zeros_like(p) for p in plain], {}, population)
        ours = trainer.model_weights(state)
        for mine, expected in zip(ours, model, strict=True):
            np.testing.assert_allclose(mine, expected, rtol=0, atol=ATOL)
        for mine, expected in zip(state.server, control, strict=True):
            np.testing.assert_allclose(mine, expected, rtol=0, atol=ATOL)
        for index, c_i in clients.items():
            for mine, expected in zip(state.clients.get(index), c_i, strict=True):
                np.testing.assert_allclose(mine, expected, rtol=0, atol=ATOL)
        assert row["clients"] == config.clients_per_round
        assert np.abs(model[0] - before[0]).max() > 100 * ATOL
        revisited |= bool(seen & {int(i) for i in chosen})
        seen |= {int(i) for i in chosen}
        if round_num >= 2:  # the control variates are non-zero from round 2 on
            assert np.abs(reversed_model[0] - model[0]).max() > 100 * ATOL
            assert np.abs(plain[0] - model[0]).max() > 100 * ATOL
    assert revisited, "no client came back: its own c_i was never used"
    assert len(state.clients) == len(seen)
    # Twice FedAvg's floats each way: the control variate travels with the model.
    params = sum(p.size for p in model)
    assert row["bytes_down_per_client"] == row["bytes_up_per_client"] == 8 * params


def test_checkpoint_layout_round_trips(tff_worker, emnist_dir: str) -> None:
    _, _, trainer, state = _trainer(emnist_dir, algorithm="scaffold", clients_per_round=4)
    state, _ = trainer.run_round(state, 1)
    arrays = trainer.to_arrays(state)
    restored = trainer.from_arrays([a.copy() for a in arrays])
    for a, b in zip(trainer.to_arrays(restored), arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(restored.clients) == 4
    with pytest.raises(UsageError, match="checkpoint does not match"):
        trainer.from_arrays(arrays[1:])


@pytest.mark.parametrize("flags, words", [
    ({"dp": "fixed", "noise_multiplier": 1.0}, "--dp=none"),
    ({"aggregator": "median"}, "--aggregator=mean"),
    ({"compression": "quantize"}, "--compression=none"),
    ({"server_optimizer": "adam"}, "--server_optimizer=sgd"),
])
def test_flags_scaffold_cannot_honour_are_refused(flags: dict, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        validate(ExperimentConfig(algorithm="scaffold", **flags))
    message = str(caught.value)
    assert message.startswith("--algorithm=scaffold needs " + words), message
    assert "\n" not in message


def test_clients_that_drop_out_keep_their_state(tff_worker, emnist_dir: str) -> None:
    """Only clients that complete a round get (or change) a control variate."""
    _, _, trainer, state = _trainer(emnist_dir, algorithm="scaffold", clients_per_round=5,
                                    dropout_rate=0.5)
    completed = 0
    for round_num in (1, 2):
        before = {i: state.clients.get(i) for i in state.clients.clients()}
        state, row = trainer.run_round(state, round_num)
        assert row["selected"] == 5 and row["completed"] + row["dropped"] == 5
        completed += row["completed"]
        changed = [i for i in state.clients.clients() if i not in before or any(
            np.any(a != b) for a, b in zip(state.clients.get(i), before[i], strict=True))]
        assert len(changed) == row["completed"]  # the dropped ones are untouched
    assert 0 < len(state.clients) <= completed < 10

"""Per-client state for algorithms whose clients remember (SCAFFOLD's control variates).

In a deployment the state lives on the device and never leaves it; the
simulation keeps it here, in the server process, on the clients' behalf, and
only the client's own round reads or writes it. A client's state is created
the first time it is read (a copy of the algorithm's initial state), is
changed only by a round the client completes (clients that drop out, arrive
late or are not sampled keep theirs), and is saved with every checkpoint so a
resumed run continues from exactly the states it stopped with.

Memory is the state's size times the clients that have trained so far, at
most the population; `check_budget` refuses a run whose worst case exceeds
`--memory_budget_mb` (or the machine's available memory) before it starts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from experiments.core import resources
from experiments.core.errors import UsageError

_MIB = 1024 ** 2


class ClientStates:
    """The states of the clients that have trained, by global client index."""

    def __init__(self, initial: Sequence[np.ndarray]):
        self._initial = [np.array(a, copy=True) for a in initial]
        self._states: dict[int, list[np.ndarray]] = {}

    @property
    def bytes_per_client(self) -> int:
        """Bytes of one client's state."""
        return int(sum(a.nbytes for a in self._initial))

    @property
    def saved_arrays(self) -> int:
        """How many arrays `to_arrays` returns (client indices + one per state part)."""
        return 1 + len(self._initial)

    def __len__(self) -> int:
        return len(self._states)

    def clients(self) -> list[int]:
        """The clients that have a state, in index order."""
        return sorted(self._states)

    def get(self, client: int) -> list[np.ndarray]:
        """Client `client`'s state (a copy of the initial state if it has none yet)."""
        state = self._states.get(int(client), self._initial)
        return [np.array(a, copy=True) for a in state]

    def put(self, client: int, state: Sequence[np.ndarray]) -> None:
        """Stores the state client `client` ends its round with."""
        if [np.shape(a) for a in state] != [a.shape for a in self._initial]:
            raise ValueError("a client state must have the initial state's shapes")
        self._states[int(client)] = [np.asarray(a, dtype=b.dtype) for a, b in
                                     zip(state, self._initial, strict=True)]

    def to_arrays(self) -> list[np.ndarray]:
        """[client indices] + one stacked array per state part (for checkpoints)."""
        ids = self.clients()
        stacked = [np.stack([self._states[i][k] for i in ids]) if ids
                   else np.zeros((0,) + a.shape, a.dtype)
                   for k, a in enumerate(self._initial)]
        return [np.asarray(ids, dtype=np.int64)] + stacked

    def from_arrays(self, arrays: Sequence[np.ndarray]) -> ClientStates:
        """The states saved by `to_arrays` (same initial state); UsageError if they
        do not fit this algorithm's state."""
        ids, parts = arrays[0], list(arrays[1:])
        if len(parts) != len(self._initial) or any(
                p.shape != (len(ids),) + a.shape for p, a in zip(parts, self._initial,
                                                                 strict=True)):
            raise UsageError("checkpoint's client states do not match this algorithm; "
                             "use --overwrite")
        restored = ClientStates(self._initial)
        for row, client in enumerate(ids):
            restored._states[int(client)] = [p[row].copy() for p in parts]
        return restored


def check_budget(what: str, bytes_per_client: int, population: int, budget_mb: int) -> None:
    """Refuses (one line) state for `population` clients that would not fit in memory."""
    need = bytes_per_client * population
    room = budget_mb * _MIB if budget_mb else resources.available_bytes()
    if need > room:
        where = f"--memory_budget_mb={budget_mb}" if budget_mb else "the available memory"
        raise UsageError(
            f"{what} keeps {bytes_per_client / _MIB:.2f} MiB of state per client, "
            f"{need / _MIB:,.0f} MiB for {population:,} clients, more than {where} "
            f"({room / _MIB:,.0f} MiB); use a smaller model or population")


def describe(what: str, bytes_per_client: int, population: int) -> dict:
    """The state's cost as recorded in hparams.json (memory and each checkpoint)."""
    return {"client_state": what, "client_state_mib_per_client": bytes_per_client / _MIB,
            "client_state_mib_at_most": bytes_per_client * population / _MIB}

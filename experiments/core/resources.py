"""Memory checked before a run starts, so it fails at once instead of being OOM-killed.

A round holds its cohort's client data several times (our arrays, the
tensors TFF serialises to its worker, the worker's copy) plus one model
copy per client and the server's state. On a shared machine an over-sized
cohort or `--max_elements_per_client` would otherwise grind through swap or
be killed by the kernel hours in, leaving a half-written run. The estimate
is deliberately simple and conservative; `--memory_budget_mb` caps what a
run may use (0: what the machine has available now).
"""

from __future__ import annotations

import numpy as np

from experiments.core.errors import UsageError

DATA_COPIES = 3  # our arrays, the serialised tensors, the worker's copy
MODEL_COPIES_EXTRA = 4  # server model, optimizer state, aggregate, eval model
_GIB = 1024 ** 3


def _cgroup_room() -> int | None:
    """Bytes the cgroup (v2 or v1) still allows, when it has a limit."""
    for limit_path, usage_path in (
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
             "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_path) as f:
                limit = f.read().strip()
            with open(usage_path) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return int(limit) - usage
    return None


def available_bytes() -> int:
    """Memory this process can still take: MemAvailable, or less under a cgroup limit."""
    room = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    room = int(line.split()[1]) * 1024
    except OSError:
        pass
    cgroup = _cgroup_room()
    known = [r for r in (room, cgroup) if r is not None]
    return min(known) if known else 1 << 62


def round_bytes(client_examples: list[int], bytes_per_example: int, model_bytes: int) -> int:
    """Estimated peak bytes of one round over the given clients' example counts."""
    data = sum(client_examples) * bytes_per_example * DATA_COPIES
    return data + model_bytes * (len(client_examples) + MODEL_COPIES_EXTRA)


def check_round(clients_per_round: int, client_sizes: list[int], cap: int | None,
                bytes_per_example: int, model_bytes: int, budget_mb: int = 0) -> int:
    """Raises a UsageError if the largest possible cohort would not fit; returns the estimate.

    The worst case is the `clients_per_round` largest clients, each capped at
    `cap` examples (`--max_elements_per_client`).
    """
    sizes = sorted((min(n, cap) if cap else n for n in client_sizes), reverse=True)
    need = round_bytes(sizes[:clients_per_round], bytes_per_example, model_bytes)
    room = budget_mb * 1024 ** 2 if budget_mb else available_bytes()
    if need > room:
        where = f"--memory_budget_mb={budget_mb}" if budget_mb else "available memory"
        raise UsageError(
            f"--clients_per_round={clients_per_round} with --max_elements_per_client="
            f"{cap or 0} needs about {need / _GIB:.1f} GiB per round (largest cohort: "
            f"{sum(sizes[:clients_per_round]):,} examples of {bytes_per_example:,} bytes, "
            f"{DATA_COPIES} copies, plus a model copy per client), more than the "
            f"{room / _GIB:.1f} GiB of {where}; lower --clients_per_round or "
            f"--max_elements_per_client")
    return need


def example_bytes(x: np.ndarray, y: np.ndarray) -> int:
    """Bytes of one (x, y) example as held in memory."""
    return int(x.dtype.itemsize * np.prod(x.shape[1:], dtype=np.int64)
               + y.dtype.itemsize * np.prod(y.shape[1:], dtype=np.int64))


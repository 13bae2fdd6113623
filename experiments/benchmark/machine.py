"""The machine the benchmark runs on: CPU model, stolen CPU time, CPU seconds, memory.

Everything here reads /proc (Linux), so the numbers can be set beside the
timings they explain: a shared host that steals CPU time or is slow to wake
idle vCPUs makes the same computation take longer without using more CPU.
"""

from __future__ import annotations

import gc
import os
import platform
import time

import tensorflow as tf

from experiments.core import tff_worker


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else what `platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_ticks(path: str = "/proc/stat") -> tuple[int, int] | None:
    """(stolen, total) CPU ticks of the machine so far; None where unreadable.

    Steal is time the hypervisor gave our virtual CPUs to another guest, one
    way a shared host makes the same computation slower; the benchmark
    reports it beside the timings it may have spoiled.
    """
    try:
        with open(path) as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_percent(start: tuple[int, int] | None, end: tuple[int, int] | None
                  ) -> float | None:
    """Share of CPU time stolen by the hypervisor between two `cpu_ticks`."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    return 100.0 * (end[0] - start[0]) / (end[1] - start[1])


def rss_bytes(pid: int | None, field: str = "VmRSS") -> int | None:
    """Resident set size of a process (VmRSS in /proc/<pid>/status; VmHWM: its
    peak so far), or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far (VmHWM), in MiB."""
    peak = rss_bytes(os.getpid(), "VmHWM")
    return None if peak is None else peak / (1024.0 * 1024.0)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (0 if unknown or gone)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_now() -> float:
    """CPU seconds used so far by this process and TFF's worker together.

    On this kind of shared VM the same centralised loop takes 5.3 s or 10.5 s
    (same CPU seconds, no steal, no throttling: its threads wait to be woken);
    CPU time is immune to that, so the per-cohort comparison reports both.
    """
    return time.process_time() + cpu_seconds(tff_worker.worker_pid())


def rss_mib() -> dict[str, float | None]:
    """Resident memory (MiB) of this process, of TFF's worker, and their total.

    Garbage is collected first, so the reading is of memory still in use.
    """
    gc.collect()
    main = rss_bytes(os.getpid())
    worker = rss_bytes(tff_worker.worker_pid())
    mib = 1024.0 * 1024.0
    return {"main_mib": None if main is None else main / mib,
            "worker_mib": None if worker is None else worker / mib,
            "total_mib": ((main or 0) + (worker or 0)) / mib}


def machine_info() -> dict:
    """Where the numbers were measured: cores, CPU, versions, load average."""
    # Imported here only: TensorFlow Federated takes seconds to load, which the
    # /proc readers above (and their tests) need not wait for.
    import tensorflow_federated as tff

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tensorflow_federated": tff.__version__,
        "loadavg_at_start": list(os.getloadavg()),
    }

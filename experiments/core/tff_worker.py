"""Owns TFF's C++ worker process for the lifetime of one program.

TFF 0.87 runs every computation in a child `worker_binary` that it starts
lazily and never reliably stops; the orphan keeps stdout open and hangs
pipes and CI. Here we start the worker ourselves, tie it to our process
(PR_SET_PDEATHSIG, so even SIGKILL of the parent takes it down) and stop it
on normal exit, on exceptions, on Ctrl-C and on SIGTERM.

The worker also listens on every interface with an unauthenticated gRPC
service that runs whatever TensorFlow graph it is sent. We preload a tiny
shim (loopback_bind.c, compiled on first use into .cache/) that turns its
wildcard bind into a loopback bind, so only this machine can reach it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

from experiments.core import child_processes, paths, stops
from experiments.core.errors import UsageError

_READY_TIMEOUT_SECONDS = 120.0
_GRPC_OPTIONS = [
    ("grpc.max_message_length", 2 * 1000 * 1000 * 1000),
    ("grpc.max_receive_message_length", 2 * 1000 * 1000 * 1000),
    ("grpc.max_send_message_length", 2 * 1000 * 1000 * 1000),
    # The worker is on localhost: never route its channel through $http(s)_proxy
    # (gRPC honours them, and the channel would never become ready).
    ("grpc.enable_http_proxy", 0),
]

_worker: subprocess.Popen | None = None
_HERE = os.path.dirname(os.path.abspath(__file__))
_SHIM_SOURCE = os.path.join(_HERE, "loopback_bind.c")
_SHIM_DIR = paths.CACHE_DIR


def loopback_shim() -> str:
    """Path of the compiled bind-to-loopback shim, building it if needed."""
    target = os.path.join(_SHIM_DIR, "loopback_bind.so")
    if (os.path.exists(target)
            and os.path.getmtime(target) >= os.path.getmtime(_SHIM_SOURCE)):
        return target
    os.makedirs(_SHIM_DIR, exist_ok=True)
    tmp = f"{target}.tmp-{os.getpid()}"
    compiler = os.environ.get("CC", "cc")
    try:
        subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", tmp, _SHIM_SOURCE,
                        "-ldl"], check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        raise UsageError(
            f"cannot compile {_SHIM_SOURCE} with '{compiler}' ({e.__class__.__name__}); "
            f"it keeps TFF's worker off the network: install a C compiler "
            f"(e.g. apt-get install gcc) or set CC") from None
    os.replace(tmp, target)
    return target


def worker_binary_path() -> str:
    """Path of the worker binary shipped inside the installed TFF package."""
    # TFF is imported only when a worker starts: core stays free of TensorFlow.
    import tensorflow_federated

    root = os.path.dirname(tensorflow_federated.__file__)
    return os.path.join(root, "data", "worker_binary")


def _start_worker(max_concurrent_calls: int) -> tuple[subprocess.Popen, int]:
    import portpicker  # here: with TFF, only when a worker starts

    port = portpicker.pick_unused_port()
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # glibc's default of 8 malloc arenas per core let the worker's resident
    # memory creep up over its first ~125 rounds (+6.5% from round 50 to 500);
    # one arena per core keeps it flat (README, "Memory over a long run").
    env.setdefault("MALLOC_ARENA_MAX", str(os.cpu_count() or 2))
    env["LD_PRELOAD"] = " ".join(filter(None, [loopback_shim(), env.get("LD_PRELOAD")]))
    process = subprocess.Popen(
        [
            worker_binary_path(),
            f"--port={port}",
            f"--max_concurrent_computation_calls={max_concurrent_calls}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr.fileno(),  # keep our stdout clean for results
        stderr=sys.stderr.fileno(),
        preexec_fn=child_processes.die_with_parent(signal.SIGKILL, own_group=True),
        env=env,
    )
    return process, port


def stop_worker() -> None:
    """Stops the worker if one is running; safe to call any number of times."""
    global _worker
    process, _worker = _worker, None
    if process is not None:
        child_processes.stop(process, timeout=10)


def worker_pid() -> int | None:
    """Pid of the running worker, for tests and diagnostics."""
    return None if _worker is None else _worker.pid


def start(max_concurrent_calls: int = -1) -> None:
    """Starts one worker and makes it TFF's default execution context."""
    global _worker
    if _worker is not None and _worker.poll() is None:
        return
    # TFF's internals, loaded only when a worker starts (core stays free of TF).
    import grpc
    from tensorflow_federated.python.core.backends.native import compiler
    from tensorflow_federated.python.core.backends.test import compiler as test_compiler
    from tensorflow_federated.python.core.environments.tensorflow_frontend import (
        tensorflow_computation,
    )
    from tensorflow_federated.python.core.impl.context_stack import context_stack_impl
    from tensorflow_federated.python.core.impl.execution_contexts import (
        sync_execution_context,
    )
    from tensorflow_federated.python.core.impl.executor_stacks import (
        python_executor_stacks,
    )
    from tensorflow_federated.python.core.impl.executors import (
        remote_executor,
        remote_executor_grpc_stub,
    )
    from tensorflow_federated.python.core.impl.types import placements

    _worker, port = _start_worker(max_concurrent_calls)
    atexit.register(stop_worker)
    channel = grpc.insecure_channel(f"localhost:{port}", _GRPC_OPTIONS)
    stub = remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel)
    deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
    while not stub.is_ready:
        if _worker.poll() is not None:
            raise UsageError(
                f"TFF worker {worker_binary_path()} exited with code "
                f"{_worker.returncode} at start-up; reinstall with ./run.sh"
            )
        if time.monotonic() > deadline:
            stop_worker()
            raise UsageError("TFF worker did not become ready within 120 s")
        time.sleep(0.05)

    def stack_fn(cardinalities):
        cardinalities.setdefault(placements.CLIENTS, 0)
        executor = remote_executor.RemoteExecutor(stub)
        executor.set_cardinalities(cardinalities)
        return executor

    def _compile(comp):
        # As TFF's test context does: secure-sum intrinsics become their plain
        # (insecure) bodies, so `tff.learning.secure_aggregator` runs here too.
        comp = test_compiler.replace_secure_intrinsics_with_bodies(comp)
        return compiler.desugar_and_transform_to_native(comp)

    context = sync_execution_context.SyncExecutionContext(
        executor_fn=python_executor_stacks.ResourceManagingExecutorFactory(stack_fn),
        compiler_fn=_compile,
        transform_args=tensorflow_computation.transform_args,
        transform_result=tensorflow_computation.transform_result,
    )
    context_stack_impl.context_stack.set_default_context(context)


@contextlib.contextmanager
def session(max_concurrent_calls: int = -1) -> Iterator[None]:
    """Runs the body with a live worker; the worker is gone on every way out.

    SIGTERM is handled as Ctrl-C is (`stops.on_stop_signal`): recorded, raised
    as SystemExit at the next safe point, or the process ends after the exit
    handlers (the worker's stop among them).
    """
    previous = signal.signal(signal.SIGTERM, stops.on_stop_signal)
    try:
        start(max_concurrent_calls)
        yield
    finally:
        stop_worker()
        signal.signal(signal.SIGTERM, previous)

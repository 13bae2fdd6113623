"""TFF's `worker_binary` never outlives the program that started it.

Each way out is exercised in a real subprocess, and the worker's pid is then
watched in /proc (a zombie counts as gone; the command name is checked so a
reused pid cannot pass for the worker):

* a small `python -c` program around `tff_worker.session()`: normal exit, an
  exception (caught, and uncaught), `tff_worker.start()` with only the atexit
  hook, and SIGKILL of the program (PR_SET_PDEATHSIG must take the worker down);
* `python -m experiments.train` on the tiny fixture data: SIGINT and SIGTERM
  mid-training, and a normal run read through pipes.

The worker writes to the program's stderr, so an orphaned worker keeps the
pipe open and a reader (CI, `| tee`, `communicate()`) hangs: every test also
checks that both pipes reach EOF promptly after the program exits.

All subprocesses start together in one module fixture, since each spends most
of its time importing TensorFlow; each test then drives and checks its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from experiments.core import tff_worker
from experiments.core.paths import REPO_ROOT

WORKER_NAME = "worker_binary"
START_TIMEOUT_SECONDS = 120.0  # from a child's start: TF import, worker, first rounds
EXIT_TIMEOUT_SECONDS = 60.0
GONE_TIMEOUT_SECONDS = 5.0  # worker gone, and pipes at EOF, this soon after exit

SCRIPT = textwrap.dedent("""
    import os
    import sys
    import time

    from experiments.core import tff_worker

    def state(pid):
        return "alive" if pid and os.path.exists(f"/proc/{pid}") else "gone"

    mode = sys.argv[1]
    if mode == "atexit":  # no session: only the atexit hook stops the worker
        tff_worker.start()
        print("worker", tff_worker.worker_pid(), flush=True)
        sys.exit(0)
    pid = None
    try:
        with tff_worker.session():
            pid = tff_worker.worker_pid()
            print("worker", pid, flush=True)
            print("inside", state(pid), flush=True)
            if mode in ("raise", "uncaught"):
                raise RuntimeError("boom inside the session")
            if mode == "sleep":
                time.sleep(300)
    except RuntimeError:
        if mode == "uncaught":
            raise
    print("after", state(pid), flush=True)
""")


# ----- /proc helpers ---------------------------------------------------------------
def _stat(pid: int) -> tuple[str, str, int] | None:
    """(command name, state, parent pid) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = text[text.index("(") + 1: text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return comm, fields[0], int(fields[1])


def _worker_alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] == WORKER_NAME and stat[1] not in "ZX"


def _wait_worker_gone(pid: int, timeout: float = GONE_TIMEOUT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while _worker_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _worker_children(parent: int) -> list[int]:
    """Pids of live `worker_binary` processes whose parent is `parent`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat and stat[0] == WORKER_NAME and stat[2] == parent and stat[1] != "Z":
                found.append(int(entry))
    return found


# ----- subprocesses ----------------------------------------------------------------
class Child:
    """A subprocess whose stdout and stderr are pipes read line by line."""

    def __init__(self, args: list[str], env: dict[str, str], read: bool = True,
                 watch: bool = False):
        # A shell that starts the suite in the background (as CI may) leaves SIGINT
        # ignored, and Python keeps an inherited SIG_IGN; a user's terminal does
        # not, so the child gets the default disposition back, as Ctrl-C finds it.
        self.proc = subprocess.Popen(
            args, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
            restore_signals=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.pid = self.proc.pid
        self.started = time.monotonic()
        self.workers_seen: set[int] = set()
        if watch:
            threading.Thread(target=self._watch_workers, daemon=True).start()
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.eof: dict[str, threading.Event] = {}
        self._changed = threading.Condition()
        if read:
            for name in self.lines:
                self.eof[name] = threading.Event()
                threading.Thread(target=self._read, args=(name,), daemon=True).start()

    def _watch_workers(self) -> None:
        """Records every worker_binary child for as long as the process runs."""
        while True:
            stat = _stat(self.pid)
            if stat is None or stat[1] in "ZX":
                return
            self.workers_seen.update(_worker_children(self.pid))
            time.sleep(0.2)

    def _read(self, name: str) -> None:
        for line in getattr(self.proc, name):
            with self._changed:
                self.lines[name].append(line.rstrip("\n"))
                self._changed.notify_all()
        self.eof[name].set()
        with self._changed:
            self._changed.notify_all()

    def text(self, name: str) -> str:
        with self._changed:
            return "\n".join(self.lines[name])

    def report(self) -> str:
        return (f"exit {self.proc.poll()}\nstdout:\n{self.text('stdout')}\n"
                f"stderr:\n{self.text('stderr')}")

    def wait_for(self, name: str, match: Callable[[str], bool]) -> str:
        """The first line of stream `name` that matches.

        Fails on EOF, or START_TIMEOUT_SECONDS after the child started (all
        children start at once, so time spent in earlier tests counts).
        """
        deadline = self.started + START_TIMEOUT_SECONDS
        with self._changed:
            while True:
                for line in self.lines[name]:
                    if match(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.eof[name].is_set():
                    pytest.fail(f"no matching line on {name} within "
                                f"{time.monotonic() - self.started:.0f} s of start"
                                f"\n{self.report()}")
                self._changed.wait(min(left, 1.0))

    def worker_pid(self) -> int:
        """The pid the script printed as its worker's."""
        line = self.wait_for("stdout", lambda s: s.startswith("worker "))
        return int(line.split()[1])

    def finish(self, timeout: float = EXIT_TIMEOUT_SECONDS) -> int:
        """Waits for exit, then asserts both pipes reach EOF promptly; the exit code."""
        try:
            returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"did not exit within {timeout} s\n{self.report()}")
        for name, event in self.eof.items():
            assert event.wait(GONE_TIMEOUT_SECONDS), (
                f"{name} still open {GONE_TIMEOUT_SECONDS} s after exit: something "
                f"(the worker?) holds the pipe\n{self.report()}")
        return returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for event in self.eof.values():
            event.wait(GONE_TIMEOUT_SECONDS)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


def _env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k != "TFF_DATA_DIR" and not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=REPO_ROOT, HOME=home, PYTHONUNBUFFERED="1")
    return env


def _train_args(emnist_dir: str, output_root: str, rounds: int) -> list[str]:
    return [sys.executable, "-m", "experiments.train", f"--data_dir={emnist_dir}",
            "--model=logistic", "--clients_per_round=2", f"--total_rounds={rounds}",
            "--rounds_per_eval=1", "--progress=true", f"--root_output_dir={output_root}"]


@pytest.fixture(scope="module")
def children(tmp_path_factory, emnist_dir, refused_proxy) -> Iterator[dict[str, Child]]:
    """Every subprocess of this module, started at once; killed at teardown."""
    tmp = tmp_path_factory.mktemp("runtime")
    (tmp / "home").mkdir()
    env = _env(str(tmp / "home"))
    proxied = dict(env, http_proxy=refused_proxy, https_proxy=refused_proxy)
    script = [sys.executable, "-c", SCRIPT]
    started: dict[str, Child] = {}
    try:
        for mode in ("exit", "raise", "uncaught", "atexit", "sleep"):
            started[mode] = Child(script + [mode], env)
        started["proxy"] = Child(script + ["exit"], proxied)
        for name in ("sigint", "sigterm"):
            started[name] = Child(_train_args(emnist_dir, str(tmp / name), 100_000), env)
        started["pipe"] = Child(_train_args(emnist_dir, str(tmp / "pipe"), 2), env,
                                read=False, watch=True)
        yield started
    finally:
        for child in started.values():
            child.kill()


# ----- the script around tff_worker.session() -------------------------------------------
@pytest.mark.parametrize("path", ["exit", "raise"])  # normal exit; exception caught
def test_leaving_the_session_stops_worker(children, path):
    child = children[path]
    pid = child.worker_pid()
    child.wait_for("stdout", lambda s: s == "inside alive")
    # Stopped by the session itself, while the program still runs.
    child.wait_for("stdout", lambda s: s == "after gone")
    assert child.finish() == 0, child.report()
    assert _wait_worker_gone(pid)


def test_uncaught_exception_stops_worker(children):
    child = children["uncaught"]
    pid = child.worker_pid()
    assert child.finish() == 1, child.report()
    assert "RuntimeError: boom inside the session" in child.text("stderr")
    assert _wait_worker_gone(pid)


def test_atexit_stops_worker_without_session(children):
    child = children["atexit"]
    pid = child.worker_pid()
    assert child.finish() == 0, child.report()
    assert _wait_worker_gone(pid)


def test_sigkill_of_parent_kills_worker(children):
    child = children["sleep"]
    pid = child.worker_pid()
    child.wait_for("stdout", lambda s: s == "inside alive")
    assert _worker_alive(pid)
    os.kill(child.pid, signal.SIGKILL)
    # PR_SET_PDEATHSIG: the kernel kills the worker, which also closes its copy
    # of our stderr pipe, so the reader is not left hanging.
    assert child.finish() == -signal.SIGKILL, child.report()
    assert _wait_worker_gone(pid), "worker survived SIGKILL of its parent"


# ----- python -m experiments.train ---------------------------------------------------
def _signal_mid_training(child: Child, signum: int) -> int:
    """Waits until rounds are running, sends `signum`; returns the worker's pid."""
    child.wait_for("stderr", lambda s: s.startswith("round 2/"))
    workers = _worker_children(child.pid)
    assert len(workers) == 1, f"worker children {workers}\n{child.report()}"
    os.kill(child.pid, signum)
    return workers[0]


def test_sigint_mid_training_stops_worker(children):
    child = children["sigint"]
    worker = _signal_mid_training(child, signal.SIGINT)
    assert child.finish() == 130, child.report()
    assert "interrupted" in child.text("stderr")
    assert "Traceback" not in child.text("stderr"), child.report()
    assert _wait_worker_gone(worker), "worker survived SIGINT"


def test_sigterm_mid_training_stops_worker(children):
    child = children["sigterm"]
    worker = _signal_mid_training(child, signal.SIGTERM)
    # 143 = 128 + SIGTERM via SystemExit, i.e. the finally blocks ran (a bare
    # death by the signal would be -15, and only PDEATHSIG would stop the worker).
    assert child.finish() == 128 + signal.SIGTERM, child.report()
    assert "Traceback" not in child.text("stderr"), child.report()
    assert _wait_worker_gone(worker), "worker survived SIGTERM"


def test_piped_training_output_reaches_eof(children):
    child = children["pipe"]
    try:
        stdout, stderr = child.proc.communicate(timeout=START_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail("communicate() hung: the pipes never reached EOF")
    assert child.proc.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert "final test accuracy" in stdout and "results:" in stdout
    assert len(child.workers_seen) == 1, f"saw workers {child.workers_seen}"
    assert _wait_worker_gone(child.workers_seen.pop())


# ----- last: a worker that cannot start costs START_TIMEOUT_SECONDS -------------------
def test_worker_starts_when_a_proxy_is_configured(children):
    # http(s)_proxy is common on managed machines; the worker's channel is local
    # and must not be routed through the proxy (or training waits 120 s, then fails).
    child = children["proxy"]
    pid = child.worker_pid()
    assert child.finish() == 0, child.report()
    assert _wait_worker_gone(pid)


@pytest.mark.parametrize("preset", [None, "8"])
def test_worker_gets_one_malloc_arena_per_core_unless_set(monkeypatch, preset):
    # glibc's default arenas let the worker's memory creep up for ~125 rounds.
    captured = {}

    def fake_popen(args, **kwargs):
        captured.update(kwargs)

    monkeypatch.setattr(tff_worker, "loopback_shim", lambda: "")
    monkeypatch.setattr(tff_worker, "worker_binary_path", lambda: "/bin/true")
    monkeypatch.setattr(tff_worker.subprocess, "Popen", fake_popen)
    if preset is None:
        monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    else:
        monkeypatch.setenv("MALLOC_ARENA_MAX", preset)
    tff_worker._start_worker(-1)
    assert captured["env"]["MALLOC_ARENA_MAX"] == (preset or str(os.cpu_count()))

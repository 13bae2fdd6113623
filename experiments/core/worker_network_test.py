"""TFF's worker must not be reachable from another host, only from this one.

The test makes a second "host": a network namespace joined to this one by a
veth pair (10.231.7.1 here, 10.231.7.2 there). From inside it, a TCP connect
to our running worker's port must be refused, while a worker started the
way TFF starts it (no loopback shim) is reachable from there: the control
that shows the probe can succeed. Needs root and iproute2; skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest

from experiments.core import tff_worker

HOST_IP, PEER_IP = "10.231.7.1", "10.231.7.2"
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to build a second network namespace")

_PROBE = ("import socket,sys\n"
          "s=socket.socket(); s.settimeout(3)\n"
          "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
          "except OSError as e:\n print('closed', e)\n")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture()
def peer_namespace():
    """A namespace `peer` reachable at PEER_IP, with this host at HOST_IP."""
    name = f"fltest{uuid.uuid4().hex[:6]}"
    host_if, peer_if = f"vh{name[-6:]}", f"vp{name[-6:]}"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _ip("link", "set", peer_if, "netns", name)
        _ip("addr", "add", f"{HOST_IP}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{PEER_IP}/24", "dev", peer_if)
        _ip("netns", "exec", name, "ip", "link", "set", peer_if, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _probe_from(namespace: str, port: int) -> str:
    out = subprocess.run(["ip", "netns", "exec", namespace, "python3", "-c", _PROBE,
                          HOST_IP, str(port)], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def _listening(pid: int, port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ss = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
        if any(f":{port} " in line and f"pid={pid}," in line for line in ss.splitlines()):
            return True
        time.sleep(0.2)
    return False


def test_our_worker_is_refused_from_another_host(peer_namespace):
    import tensorflow_federated as tff

    with tff_worker.session():
        assert tff.federated_computation(lambda: 7)() == 7  # our experiment works
        pid = tff_worker.worker_pid()
        port = int(next(a for a in open(f"/proc/{pid}/cmdline").read().split("\0")
                        if a.startswith("--port=")).split("=")[1])
        assert _listening(pid, port)
        assert _probe_from(peer_namespace, port).startswith("closed")


def test_an_unshimmed_worker_would_be_reachable(peer_namespace):
    import portpicker

    port = portpicker.pick_unused_port()
    worker = subprocess.Popen([tff_worker.worker_binary_path(), f"--port={port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _listening(worker.pid, port)
        assert _probe_from(peer_namespace, port) == "open"
    finally:
        worker.kill()
        worker.wait()

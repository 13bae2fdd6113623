"""A sweep in TensorBoard's HParams dashboard: the real TensorBoard, its HTTP data API.

A two-trial sweep runs as a user runs it (`python -m experiments.sweep`, the
tiny EMNIST fixture); then the TensorBoard that ships with TensorFlow is
started on a loopback port over the sweep folder, and its hparams plugin's data
API must show the sweep's layout (the varied flag first, the key flags, the
metrics) and list every trial as a session group with its flags and its final
metrics (test accuracy and upload bits as written on its last round). With Debian's
Chromium present, the dashboard is also rendered headless and the screenshot
kept in .cache/artefacts/. The server is stopped at the end, whatever happens.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from experiments.core import child_processes
from experiments.core.paths import CACHE_DIR, REPO_ROOT

RATES = (0.05, 0.1)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, route: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/data/plugin/hparams/{route}",
        data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return json.loads(response.read())


def _last_row(folder: str) -> dict:
    with open(os.path.join(folder, "metrics.csv")) as f:
        return list(csv.DictReader(f))[-1]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, emnist_dir) -> str:
    root = tmp_path_factory.mktemp("tb")
    spec = root / "tiny.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tb", "base": {"data_dir": emnist_dir, "model": "logistic",
                               "total_rounds": 2, "rounds_per_eval": 1,
                               "clients_per_round": 2},
        "grid": {"client_learning_rate": list(RATES)}}))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=REPO_ROOT, HOME=str(root))
    done = subprocess.run([sys.executable, "-m", "experiments.sweep", str(spec),
                           f"--root_output_dir={root / 'out'}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return str(root / "out" / "tb")


def test_tensorboard_hparams_lists_every_trial(sweep: str, tmp_path) -> None:
    port = _free_port()
    log = open(tmp_path / "tensorboard.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", f"--logdir={sweep}",
         "--host=127.0.0.1", f"--port={port}", "--reload_interval=1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(tmp_path)})
    try:
        experiment, deadline = {}, time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                experiment = _post(port, "experiment", {"experimentName": ""})
                if len(experiment.get("hparamInfos", [])) > 1 and experiment.get(
                        "metricInfos"):
                    break
            except OSError:
                pass
            time.sleep(1)
        names = [h["name"] for h in experiment.get("hparamInfos", [])]
        # The sweep's layout: the varied flag first, then the key ones, nothing else.
        assert names[0] == "client_learning_rate" and "model" in names, experiment
        assert "heatmap_users" not in names
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"test_accuracy", "bits_up_per_client", "epsilon_rdp"} <= metrics, metrics

        groups = _post(port, "session_groups", {
            "experimentName": "", "startIndex": 0, "sliceSize": 100,
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                "STATUS_RUNNING"],
            "colParams": [{"hparam": "client_learning_rate"},
                          {"metric": {"tag": "test_accuracy", "group": ""}}]})
        found = {}
        for group in groups["sessionGroups"]:
            rate = group["hparams"]["client_learning_rate"]
            found[rate] = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
            assert group["hparams"]["model"] == "logistic"
        assert sorted(found) == sorted(RATES)
        for rate in RATES:
            trial = os.path.join(sweep, f"client_learning_rate={rate}")
            row = _last_row(trial)
            assert found[rate]["test_accuracy"] == pytest.approx(
                float(row["test_accuracy"]), rel=1e-6)
            assert found[rate]["bits_up_per_client"] == pytest.approx(
                float(row["bits_up_per_client"]))

        if CHROMIUM:  # the dashboard itself, as a user sees it
            shot = os.path.join(CACHE_DIR, "artefacts", "tensorboard_hparams.png")
            os.makedirs(os.path.dirname(shot), exist_ok=True)
            subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                            f"--screenshot={shot}", "--window-size=1400,900",
                            "--virtual-time-budget=15000",
                            f"http://127.0.0.1:{port}/#hparams"],
                           capture_output=True, timeout=120, check=True)
            assert os.path.getsize(shot) > 10_000
    finally:
        child_processes.stop(server, timeout=30)
        log.close()
    assert server.poll() is not None  # nothing left running

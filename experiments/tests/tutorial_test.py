"""docs/tutorial.md runs: every command of its `sh` blocks, in order, at reduced size.

The commands are read from the page itself, so an edit that breaks one fails
here. Reduced size: the tiny EMNIST fixture through $TFF_DATA_DIR (the same
data resolution a user's machine goes through), 2 rounds and at most 3
clients per round (appended flags win over earlier ones), the sweep spec
copied with those values, results under a temporary folder. The privacy plan
only computes, so it runs as written.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from experiments.core.paths import REPO_ROOT

PAGE = os.path.join(REPO_ROOT, "docs", "tutorial.md")
ROUNDS, CLIENTS = 2, 3


def commands() -> list[str]:
    """The `./run.sh ...` lines of the page's ```sh blocks, in order."""
    with open(PAGE) as f:
        blocks = re.findall(r"```sh\n(.*?)```", f.read(), re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip().startswith("./run.sh ")]


def _reduced_spec(path: str, folder) -> str:
    with open(os.path.join(REPO_ROOT, path)) as f:
        spec = yaml.safe_load(f)
    spec["base"].update(total_rounds=ROUNDS, rounds_per_eval=1)
    spec["grid"]["clients_per_round"] = [2, CLIENTS]
    copy = folder / os.path.basename(path)
    copy.write_text(yaml.safe_dump(spec))
    return str(copy)


def _reduce(command: str, folder) -> list[str]:
    """The command at test size, writing under `folder`."""
    args = command.split()
    verb = args[1]
    out = str(folder / "results")
    args = [a.replace("results/", out + "/") for a in args]
    if verb in ("demo", "train"):
        args += [f"--total_rounds={ROUNDS}", f"--clients_per_round={CLIENTS}",
                 "--rounds_per_eval=1", f"--root_output_dir={out}", "--noprogress"]
    elif verb == "sweep":
        args[2] = _reduced_spec(args[2], folder)
        args += [f"--root_output_dir={out}"]
    return [os.path.join(REPO_ROOT, "run.sh")] + args[1:]


def test_the_page_has_the_steps():
    verbs = [c.split()[1] for c in commands()]
    assert verbs == ["demo", "privacy", "train", "sweep", "report"], verbs


def test_every_tutorial_command_runs(tmp_path, emnist_dir):
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(TFF_DATA_DIR=emnist_dir, HOME=str(tmp_path / "home"))
    for command in commands():
        done = subprocess.run(_reduce(command, tmp_path), cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
        if command.split()[1] in ("demo", "train"):
            assert "final test accuracy" in done.stdout, command
        if command.split()[1] == "privacy":
            assert "epsilon" in done.stdout, done.stdout
    sweep = tmp_path / "results" / "tutorial_dp"
    assert (sweep / "report.md").is_file()
    assert any(p.suffix == ".png" for p in (sweep / "plots").iterdir())
    dp_run = tmp_path / "results" / "first_dp" / "metrics.csv"
    assert "epsilon_rdp" in dp_run.read_text().splitlines()[0]


@pytest.mark.parametrize("path", ["configs/sweeps/tutorial_dp.yaml"])
def test_the_tutorial_sweep_is_what_the_page_says(path):
    with open(os.path.join(REPO_ROOT, path)) as f:
        spec = yaml.safe_load(f)
    assert len(spec["grid"]["noise_multiplier"]) * len(spec["grid"]["clients_per_round"]) == 4

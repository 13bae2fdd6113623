"""Runs a grid of experiments from a YAML spec, each trial its own train.py process.

    python -m experiments.sweep configs/sweeps/femnist_dp.yaml \
        [--root_output_dir=results] [--max_parallel=N]

The spec:

    name: femnist_dp             # optional; default: the spec's file name
    base:                        # flags shared by every trial
      flagfile: configs/emnist_fedavg_demo.cfg
      total_rounds: 100
    grid:                        # crossed: every combination
      noise_multiplier: [0.1, 0.5]
    zip:                         # varied together (lists of equal length)
      clients_per_round: [10, 50]
      clip: [0.5, 1.0]
    cases:                       # alternatives, each with its own flags
      - {compression: none}
      - {compression: quantize, quantization_bits: 4}
      - {compression: random_mask, keep_fraction: 0.1}
    random:                      # `count` samples, each drawn for every flag below
      count: 4
      seed: 0                    # seeds the sampler (not training; see seeds:)
      client_learning_rate: {loguniform: [0.001, 1.0]}   # log-uniform in [low, high)
      clip: {uniform: [0.1, 1.0]}                        # uniform in [low, high)
      model: {choice: [2nn, cnn]}                        # one of the values
      client_batch_size: {int: [10, 50]}                 # integer in [low, high]
    seeds: 3                     # repeats (--seed=0,1,2), or a list: [3, 7]

Trials are grid x zip-rows x cases x random samples x seeds, in a fixed order, each
named after its varied values (`noise_multiplier=0.1,clients_per_round=10,clip=0.5,seed=0`)
and written to `<root_output_dir>/<name>/<trial>/` in the one results layout.
Each trial's flags go to `<root>/<name>/.trials/<trial>.cfg`, so
`python -m experiments.train --flagfile=<that file>` reproduces it; its
stdout/stderr go beside it (`.out`, `.err`).

Trials whose folder has summary.json are skipped, so rerunning a sweep resumes
it (an interrupted trial resumes from its checkpoint). A failing trial is
recorded in `<root>/<name>/sweep_status.json` (exit code, last stderr line)
while the others go on. Exit code: 0 if every trial succeeded, 1 if any failed,
2 for a bad spec or a sweep already running in that folder, 130 / 143 after
Ctrl-C / SIGTERM (running trials are stopped and recorded as interrupted).

Random samples come from numpy's PCG64 seeded with `random.seed` (default 0):
sample by sample, flag by flag in spec order, floats rounded to 6 significant
digits (so a trial's name is its exact flag value); the same spec always
expands to the same trials.

`--launcher=ray` runs the same trials as Ray tasks (experiments/ray_launcher.py)
on the cluster at `--ray_address` (default: a local one for this sweep), each
reserving `--cpus_per_trial` / `--gpus_per_trial`; every task still runs
`python -m experiments.train --flagfile=...` and writes the same folders, so
all nodes must see the same filesystem (the checkout and the output root).
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import fcntl
import itertools
import math
import os
import re
import signal
import subprocess
import sys
import time
import typing
from collections.abc import Sequence
from typing import Any

from absl import app, flags

from experiments import errors
from experiments.errors import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("name", "base", "grid", "zip", "cases", "random", "seeds")
DISTRIBUTIONS = ("uniform", "loguniform", "choice", "int")
_RANDOM_DIGITS = 6
# Set by the sweep for every trial; a spec may not choose them.
RESERVED = ("experiment_name", "root_output_dir")
STATUS_FILE = "sweep_status.json"
TRIALS_DIR = ".trials"
LOCK_FILE = ".lock"
TERMINATE_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.2
_MAX_NAME = 180
_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")

_FLAGS = flags.FLAGS
# Guarded: experiments.config defines the same --root_output_dir (a string
# defaulting to "results") when both are imported into one process (tests).
if "root_output_dir" not in _FLAGS:
    flags.DEFINE_string("root_output_dir", "results",
                        "Root folder; trials go to <root_output_dir>/<sweep name>/.")
flags.DEFINE_integer("max_parallel", max(1, (os.cpu_count() or 1) // 2),
                     "Trials run at once (default: half the CPUs).", lower_bound=1)
flags.DEFINE_enum("launcher", "local", ["local", "ray"],
                  "local: trials are subprocesses here; ray: Ray tasks on a cluster.")
flags.DEFINE_string("ray_address", "",
                    "--launcher=ray: cluster address ('auto', 'HOST:PORT'); empty starts "
                    "a local cluster for this sweep.")
flags.DEFINE_float("cpus_per_trial", 1.0, "--launcher=ray: CPUs each trial reserves.",
                   lower_bound=0.0)
flags.DEFINE_float("gpus_per_trial", 0.0, "--launcher=ray: GPUs each trial reserves.",
                   lower_bound=0.0)


# ----- the spec ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Trial:
    """One experiment of a sweep: its folder name and its flags (name -> value)."""

    name: str
    varied: dict[str, Any]
    flags: dict[str, Any]

    def flag_lines(self, output_dir: str) -> list[str]:
        """The trial's train.py flags, one `--name=value` per line (flagfile first)."""
        # The flagfile goes first so that every flag given in the spec overrides it.
        ordered = sorted(self.flags.items(), key=lambda item: item[0] != "flagfile")
        lines = [f"--{key}={_format(value)}" for key, value in ordered]
        lines.append(f"--experiment_name={self.name}")
        lines.append(f"--root_output_dir={output_dir}")
        lines.append("--noprogress")
        return lines


@dataclasses.dataclass(frozen=True)
class Sweep:
    """An expanded spec: its name and its trials, in run order."""

    name: str
    trials: list[Trial]


def _config_fields() -> dict[str, dataclasses.Field]:
    from experiments import config as config_lib

    return {f.name: f for f in dataclasses.fields(config_lib.ExperimentConfig)}


def _field_types() -> dict[str, type]:
    from experiments import config as config_lib

    return typing.get_type_hints(config_lib.ExperimentConfig)


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _suggest(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _check_flag(section: str, key: Any, fields: dict[str, dataclasses.Field]) -> str:
    if not isinstance(key, str):
        raise UsageError(f"{section}: flag names must be strings, got {key!r}")
    if key in RESERVED:
        raise UsageError(f"{section}.{key}: set by the sweep for every trial (use "
                         f"--root_output_dir of the sweep; trial names are generated)")
    if key == "flagfile" and section != "base":
        raise UsageError(f"{section}.flagfile: a flagfile can only be given in base")
    if key != "flagfile" and key not in fields:
        valid = sorted(fields) + ["flagfile"]
        raise UsageError(f"{section}: unknown flag '{key}'{_suggest(key, valid)}")
    return key


def _check_value(where: str, key: str, value: Any, fields: dict[str, dataclasses.Field],
                 types: dict[str, type]) -> Any:
    """The value as train.py would take it; a UsageError if it cannot be one."""
    if key == "flagfile":
        if not isinstance(value, str) or not value:
            raise UsageError(f"{where}: must be the path of a file of --name=value lines")
        return _resolve_flagfile(where, value)
    kind = types[key]
    choices = fields[key].metadata.get("choices")
    if isinstance(value, (list, dict)) or value is None:
        raise UsageError(f"{where}: must be a single {kind.__name__}, got {value!r}")
    if kind is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: must be true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where}: must be an integer, got {value!r}")
    elif kind is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                value = float(value)
            except ValueError:
                raise UsageError(f"{where}: must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{where}: must be a number, got {value!r}")
        value = float(value)
    else:
        value = str(value)
        if choices and value not in choices:
            raise UsageError(f"{where}: {value!r} is not one of {', '.join(choices)}"
                             f"{_suggest(value, choices)}")
    return value


def _resolve_flagfile(where: str, path: str) -> str:
    """An absolute path: as given, else relative to the project root."""
    for candidate in (os.path.abspath(path), os.path.join(ROOT, path)):
        if os.path.isfile(candidate):
            return candidate
    raise UsageError(f"{where}: {path} not found (relative paths are tried from the "
                     f"current folder and from {ROOT})")


def _mapping(spec: dict, section: str) -> dict:
    value = spec.get(section)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{section}: must be a mapping of flag: value, got "
                         f"{type(value).__name__}")
    return value


def _cases(spec: dict, fields: dict, types: dict) -> list[dict]:
    """The `cases:` rows (one empty row if absent), each flag and value checked."""
    value = spec.get("cases")
    if value is None:
        return [{}]
    if not isinstance(value, list) or not value:
        raise UsageError("cases: must be a non-empty list of mappings of flag: value")
    rows = []
    for i, case in enumerate(value):
        if not isinstance(case, dict) or not case:
            raise UsageError(f"cases[{i}]: must be a non-empty mapping of flag: value, "
                             f"got {case!r}")
        for key in case:
            _check_flag(f"cases[{i}]", key, fields)
        rows.append({k: _check_value(f"cases[{i}].{k}", k, v, fields, types)
                     for k, v in case.items()})
    return rows


def _seeds(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise UsageError(f"seeds: {value} must be a count >= 1 (or a list of seeds)")
        return list(range(value))
    if isinstance(value, list) and value and all(
            isinstance(s, int) and not isinstance(s, bool) for s in value):
        if len(set(value)) != len(value):
            raise UsageError(f"seeds: {value} repeats a seed")
        return list(value)
    raise UsageError(f"seeds: must be a count or a non-empty list of integers, got {value!r}")


def _round(value: float) -> float:
    return float(f"{value:.{_RANDOM_DIGITS}g}")


def _distribution(where: str, spec: Any) -> tuple[str, list]:
    """(kind, arguments) of one `{kind: [...]}` entry of the random section."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise UsageError(f"{where}: must be one of {{uniform: [low, high]}}, "
                         f"{{loguniform: [low, high]}}, {{int: [low, high]}}, "
                         f"{{choice: [values]}}; got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        raise UsageError(f"{where}: unknown distribution '{kind}'"
                         f"{_suggest(str(kind), DISTRIBUTIONS)}; valid: "
                         f"{', '.join(DISTRIBUTIONS)}")
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise UsageError(f"{where}.choice: must be a non-empty list of values")
        return kind, args
    if (not isinstance(args, list) or len(args) != 2
            or any(isinstance(a, bool) or not isinstance(a, (int, float, str)) for a in args)):
        raise UsageError(f"{where}.{kind}: must be [low, high], got {args!r}")
    try:
        low, high = (float(a) for a in args)
    except ValueError:
        raise UsageError(f"{where}.{kind}: must be two numbers, got {args!r}") from None
    if kind == "int" and not all(float(a).is_integer() for a in (low, high)):
        raise UsageError(f"{where}.int: must be two integers, got {args!r}")
    if low > high or (low == high and kind != "int"):
        raise UsageError(f"{where}.{kind}: low must be below high, got {args!r}")
    if kind == "loguniform" and low <= 0:
        raise UsageError(f"{where}.loguniform: low must be > 0, got {args!r}")
    return kind, [int(low), int(high)] if kind == "int" else [low, high]


def _draw(rng: Any, kind: str, args: list) -> Any:
    """One value: the single place random values are drawn (see the module docstring)."""
    if kind == "uniform":
        return _round(rng.uniform(args[0], args[1]))
    if kind == "loguniform":
        return _round(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
    if kind == "int":
        return int(rng.integers(args[0], args[1], endpoint=True))
    return args[int(rng.integers(len(args)))]


def random_rows(section: Any, fields: dict[str, dataclasses.Field],
                types: dict[str, type]) -> list[dict[str, Any]]:
    """The `count` seeded samples of a random section, each checked as a flag value."""
    if section is None:
        return [{}]
    if not isinstance(section, dict):
        raise UsageError(f"random: must be a mapping with count, seed and flag: "
                         f"{{distribution: [...]}} entries, got {type(section).__name__}")
    count, seed = section.get("count"), section.get("seed", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UsageError(f"random.count: must be an integer >= 1, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"random.seed: must be an integer >= 0, got {seed!r}")
    dists = {}
    for key, spec in section.items():
        if key in ("count", "seed"):
            continue
        _check_flag("random", key, fields)
        kind, args = _distribution(f"random.{key}", spec)
        if kind in ("uniform", "loguniform") and types[key] is not float:
            raise UsageError(f"random.{key}: {kind} draws numbers but --{key} is "
                             f"{types[key].__name__}; use int or choice")
        if kind == "int" and types[key] not in (int, float):
            raise UsageError(f"random.{key}: int draws integers but --{key} is "
                             f"{types[key].__name__}; use choice")
        if kind == "choice":
            args = [_check_value(f"random.{key}.choice[{i}]", key, v, fields, types)
                    for i, v in enumerate(args)]
        dists[key] = (kind, args)
    if not dists:
        raise UsageError("random: give at least one flag: {distribution: [...]}")
    import numpy as np

    rng = np.random.Generator(np.random.PCG64(seed))
    rows = []
    for _ in range(count):
        row = {}
        for key, (kind, args) in dists.items():
            value = _draw(rng, kind, args)
            row[key] = float(value) if types[key] is float else value
        rows.append(row)
    return rows


def safe_name(text: str) -> str:
    """A folder name from `text`: unsafe characters become '_', long names are hashed."""
    import hashlib

    name = _UNSAFE.sub("_", text).strip(".") or "trial"
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[:_MAX_NAME - 11]}-{digest}"
    return name


def expand(spec: Any, default_name: str) -> Sweep:
    """Validates a parsed spec and lists its trials (grid x zip rows x cases x samples
    x seeds)."""
    if not isinstance(spec, dict):
        raise UsageError(f"the spec must be a mapping with keys {', '.join(SECTIONS)}")
    for key in spec:
        if key not in SECTIONS:
            raise UsageError(f"unknown section '{key}'{_suggest(str(key), SECTIONS)}; "
                             f"valid: {', '.join(SECTIONS)}")
    name = spec.get("name", default_name)
    if not isinstance(name, str) or safe_name(name) != name or name in (".", ".."):
        raise UsageError(f"name: {name!r} must be a plain folder name "
                         f"(letters, digits, . _ = , + -)")
    fields, types = _config_fields(), _field_types()
    base, grid, zipped = (_mapping(spec, s) for s in ("base", "grid", "zip"))
    seeds = _seeds(spec.get("seeds"))

    random_section = spec.get("random")
    random_keys = ({k: None for k in random_section if k not in ("count", "seed")}
                   if isinstance(random_section, dict) else {})
    seen: dict[str, str] = {}
    for section, mapping in (("base", base), ("grid", grid), ("zip", zipped),
                             ("random", random_keys)):
        for key in mapping:
            _check_flag(section, key, fields)
            if key in seen:
                raise UsageError(f"{section}.{key}: already set in {seen[key]}")
            seen[key] = section
    case_rows = _cases(spec, fields, types)
    for i, case in enumerate(case_rows):
        for key in case:
            if key in seen:
                raise UsageError(f"cases[{i}].{key}: already set in {seen[key]}")
    if seeds and any("seed" in case for case in case_rows):
        raise UsageError("cases: give seeds either in the cases or in 'seeds:'")
    if seeds and "seed" in seen:
        raise UsageError(f"{seen['seed']}.seed: give seeds either there or in 'seeds:'")

    base_values = {k: _check_value(f"base.{k}", k, v, fields, types) for k, v in base.items()}
    def value_lists(section: str, mapping: dict) -> dict[str, list]:
        checked: dict[str, list] = {}
        for key, values in mapping.items():
            if not isinstance(values, list) or not values:
                raise UsageError(f"{section}.{key}: must be a non-empty list of values, "
                                 f"got {values!r}")
            checked[key] = [_check_value(f"{section}.{key}[{i}]", key, v, fields, types)
                            for i, v in enumerate(values)]
        return checked

    grid_values = value_lists("grid", grid)
    zip_values = value_lists("zip", zipped)
    lengths = {k: len(v) for k, v in zip_values.items()}
    if len(set(lengths.values())) > 1:
        raise UsageError("zip: lists must have equal lengths, got "
                         + ", ".join(f"{k}: {n}" for k, n in lengths.items()))
    rows = len(next(iter(zip_values.values()))) if zip_values else 1
    zip_rows = [{k: v[i] for k, v in zip_values.items()} for i in range(rows)]
    samples = random_rows(random_section, fields, types)

    trials: list[Trial] = []
    by_name: dict[str, dict] = {}
    grid_combos = itertools.product(*grid_values.values())
    for combo, zip_row, case, sample, seed in itertools.product(
            grid_combos, zip_rows, case_rows, samples, seeds or [None]):
        varied = dict(zip(grid_values, combo, strict=True))
        varied.update(zip_row)
        varied.update(case)
        varied.update(sample)
        if seed is not None:
            varied["seed"] = seed
        trial_name = safe_name(",".join(f"{k}={_format(v)}" for k, v in varied.items())
                               or "base")
        if trial_name in by_name:
            raise UsageError(f"trials {by_name[trial_name]} and {varied} get the same "
                             f"folder name {trial_name}; make the values distinct")
        by_name[trial_name] = varied
        trials.append(Trial(trial_name, varied, {**base_values, **varied}))
    return Sweep(name, trials)


def load(path: str) -> Sweep:
    """Reads, validates and expands a YAML spec file."""
    import yaml

    try:
        with open(path) as f:
            spec = yaml.safe_load(f)
    except OSError as e:
        raise UsageError(f"{path}: cannot read it ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"{path}: not valid YAML{where} ({problem})") from None
    default = safe_name(os.path.splitext(os.path.basename(path))[0])
    return expand(spec, default)


# ----- running ---------------------------------------------------------------------------
class Interrupted(Exception):
    """Raised in the main loop by SIGINT / SIGTERM."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    del frame
    raise Interrupted(signum)


def _die_with_parent() -> None:
    """In the child: SIGTERM it if the sweep dies without cleaning up (Linux)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f.read()[-65536:].splitlines()]
    except OSError:
        return ""
    return next((line for line in reversed(lines) if line), "")


@dataclasses.dataclass
class _Running:
    trial: Trial
    proc: Any  # subprocess.Popen, or anything with its poll/send_signal/wait/kill/returncode
    started: float
    err_path: str


class LocalLauncher:
    """Starts each trial as a subprocess of this sweep (the default launcher)."""

    def start(self, command: list[str], env: dict[str, str], out_path: str,
              err_path: str) -> subprocess.Popen:
        """Starts one trial; the returned object is polled, signalled and waited on."""
        with open(out_path, "w") as out, open(err_path, "w") as err:
            return subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                start_new_session=True, preexec_fn=_die_with_parent)

    def close(self) -> None:
        """Nothing to release."""


class Runner:
    """Runs a sweep's trials in subprocesses, at most `max_parallel` at a time."""

    def __init__(self, sweep: Sweep, root: str, max_parallel: int, spec_path: str = "",
                 launcher: Any = None):
        self.sweep = sweep
        self.launcher = launcher or LocalLauncher()
        self.dir = os.path.abspath(os.path.join(root, sweep.name))
        self.trials_dir = os.path.join(self.dir, TRIALS_DIR)
        self.max_parallel = max_parallel
        self.spec_path = os.path.abspath(spec_path) if spec_path else ""
        self.status: dict[str, dict] = {}
        self.durations: list[float] = []
        self.running: dict[str, _Running] = {}
        self._tty = sys.stderr.isatty()
        self._last_progress = ""

    # ----- files ------------------------------------------------------------------------
    def _cfg_path(self, trial: Trial) -> str:
        return os.path.join(self.trials_dir, f"{trial.name}.cfg")

    def command(self, trial: Trial) -> list[str]:
        """The train.py command line of a trial."""
        return [sys.executable, "-m", "experiments.train",
                f"--flagfile={self._cfg_path(trial)}"]

    def _write_cfg(self, trial: Trial) -> None:
        from experiments import results

        text = (f"# Trial {trial.name} of sweep {self.sweep.name}"
                + (f" ({self.spec_path})" if self.spec_path else "") + "\n"
                + "\n".join(trial.flag_lines(self.dir)) + "\n")
        results.atomic_write(self._cfg_path(trial), text.encode())

    def _write_status(self) -> None:
        from experiments import results

        counts = self._counts()
        results.write_json(os.path.join(self.dir, STATUS_FILE), {
            "sweep": self.sweep.name, "spec": self.spec_path,
            "updated": datetime.datetime.now(datetime.UTC).isoformat(),
            "counts": counts, "trials": self.status})

    def _complete(self, trial: Trial) -> bool:
        from experiments import results

        return os.path.exists(os.path.join(self.dir, trial.name, results.SUMMARY))

    # ----- progress ---------------------------------------------------------------------
    def _counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("done", "running", "failed", "skipped", "interrupted",
                                "pending"), 0)
        for entry in self.status.values():
            counts[entry["status"]] += 1
        return counts

    def _progress(self, final: bool = False) -> None:
        c = self._counts()
        total = len(self.sweep.trials)
        line = (f"sweep {self.sweep.name}: {c['done'] + c['skipped']}/{total} done, "
                f"{c['running']} running, {c['failed']} failed, {c['skipped']} skipped")
        if c["interrupted"]:
            line += f", {c['interrupted']} interrupted"
        left = c["pending"] + c["running"]
        if self.durations and left:
            mean = sum(self.durations) / len(self.durations)
            eta = mean * math.ceil(left / self.max_parallel)
            line += f", ETA {_duration(eta)}"
        if line == self._last_progress:
            if final and self._tty:
                sys.stderr.write("\n")
            return
        self._last_progress = line
        if self._tty:
            sys.stderr.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    # ----- trials -----------------------------------------------------------------------
    def _launch(self, trial: Trial) -> None:
        out_path = os.path.join(self.trials_dir, f"{trial.name}.out")
        err_path = os.path.join(self.trials_dir, f"{trial.name}.err")
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"]
                                    if env.get("PYTHONPATH") else "")
        # Signals wait until the trial is registered, so an interrupt always finds
        # (and stops) every trial started; the child unblocks them.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            proc = self.launcher.start(self.command(trial), env, out_path, err_path)
            self.running[trial.name] = _Running(trial, proc, time.monotonic(), err_path)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        self.status[trial.name].update(status="running", exit_code=None, last_stderr="",
                                       started=datetime.datetime.now(
                                           datetime.UTC).isoformat())

    def _reap(self) -> bool:
        """Records trials that exited; True if any did."""
        changed = False
        for name, run in list(self.running.items()):
            code = run.proc.poll()
            if code is None:
                continue
            del self.running[name]
            seconds = time.monotonic() - run.started
            entry = self.status[name]
            entry.update(exit_code=code, seconds=round(seconds, 1))
            if code == 0 and self._complete(run.trial):
                entry.update(status="done", last_stderr="")
                self.durations.append(seconds)
            else:
                last = _last_line(run.err_path)
                if code == 0:
                    last = last or "exited 0 but wrote no summary.json"
                entry.update(status="failed", last_stderr=last)
            changed = True
        return changed

    def _terminate_all(self) -> None:
        for run in self.running.values():
            if run.proc.poll() is None:
                run.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + TERMINATE_TIMEOUT_SECONDS
        for run in self.running.values():
            try:
                run.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()
        for name, run in self.running.items():
            self.status[name].update(
                status="interrupted", exit_code=run.proc.returncode,
                seconds=round(time.monotonic() - run.started, 1),
                last_stderr=_last_line(run.err_path))
        self.running.clear()

    def _loop(self, pending: list[Trial]) -> None:
        queue = list(pending)
        while queue or self.running:
            changed = self._reap()
            while queue and len(self.running) < self.max_parallel:
                self._launch(queue.pop(0))
                changed = True
            if changed:
                self._write_status()
                self._progress()
            time.sleep(POLL_SECONDS)

    def run(self) -> int:
        """Runs the sweep under its lock; the process exit code."""
        try:
            os.makedirs(self.trials_dir, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--root_output_dir: cannot create {self.dir} "
                             f"({e.strerror})") from None
        lock = open(os.path.join(self.dir, LOCK_FILE), "a")
        try:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"another sweep is running in {self.dir} (it holds "
                                 f"{LOCK_FILE}); wait for it to finish") from None
            return self._run_locked()
        finally:
            lock.close()

    def _run_locked(self) -> int:
        pending = []
        for trial in self.sweep.trials:
            self._write_cfg(trial)
            entry = {"status": "pending", "varied": trial.varied,
                     "command": " ".join(self.command(trial)), "exit_code": None,
                     "last_stderr": ""}
            if self._complete(trial):
                entry["status"] = "skipped"
            else:
                pending.append(trial)
            self.status[trial.name] = entry
        self._write_status()
        self._progress()
        handlers = {s: signal.signal(s, _raise_interrupted) for s in _STOP_SIGNALS}
        interrupted = None
        try:
            self._loop(pending)
        except Interrupted as e:
            interrupted = e.signum
            for s in handlers:
                signal.signal(s, signal.SIG_IGN)
            self._terminate_all()
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)
        self._write_status()
        self._progress(final=True)
        self._print_summary(interrupted)
        if interrupted is not None:
            return 128 + interrupted
        return 1 if any(e["status"] == "failed" for e in self.status.values()) else 0

    def _print_summary(self, interrupted: int | None) -> None:
        c = self._counts()
        print(f"sweep {self.sweep.name}: {len(self.sweep.trials)} trials: {c['done']} done, "
              f"{c['skipped']} skipped (already complete), {c['failed']} failed"
              + (f", {c['interrupted']} interrupted" if c["interrupted"] else "")
              + (f", {c['pending']} not started" if c["pending"] else ""))
        for name, entry in self.status.items():
            if entry["status"] in ("failed", "interrupted"):
                print(f"  {entry['status']} (exit {entry['exit_code']}): {name}: "
                      f"{entry['last_stderr']}")
                print(f"    rerun: {entry['command']}")
        if interrupted is not None:
            print(f"interrupted by {signal.Signals(interrupted).name}; run the same "
                  f"command again to resume")
        print(f"status: {os.path.join(self.dir, STATUS_FILE)}")
        print(f"results: {self.dir}  (analysis.runs.load_sweep reads it)")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        print("sweep: error: give exactly one spec file: python -m experiments.sweep "
              "SPEC.yaml [--root_output_dir=DIR] [--max_parallel=N]", file=sys.stderr)
        sys.exit(errors.exit_code())
    launcher = None
    try:
        sweep = load(argv[1])
        if _FLAGS.launcher == "ray":
            from experiments import ray_launcher

            launcher = ray_launcher.RayLauncher(_FLAGS.ray_address, _FLAGS.cpus_per_trial,
                                                _FLAGS.gpus_per_trial)
        code = Runner(sweep, _FLAGS.root_output_dir, _FLAGS.max_parallel, argv[1],
                      launcher).run()
    except UsageError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        sys.exit(errors.exit_code())
    finally:
        if launcher is not None:
            launcher.close()
    sys.exit(code)


if __name__ == "__main__":
    app.run(main, flags_parser=errors.flags_parser("sweep"))

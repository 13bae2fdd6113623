"""A sweep spec (YAML) expanded into named trials, each a set of train flags.

The spec's sections (base, grid, zip, cases, random, seeds) and the naming of
trials are described in `experiments/sweep.py`, the binary. Expansion is
checked against the flags of the binary that runs the trials (`settings`, a
dataclass whose fields are its flags: `experiments.config.ExperimentConfig`),
so a typo or a bad value is one line naming the section and key.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import os
import re
import typing
from collections.abc import Sequence
from typing import Any

import numpy as np
import yaml

from experiments.core.errors import UsageError
from experiments.core.paths import REPO_ROOT

SECTIONS = ("name", "base", "grid", "zip", "cases", "random", "seeds")
DISTRIBUTIONS = ("uniform", "loguniform", "choice", "int")
_RANDOM_DIGITS = 6
# Set by the sweep for every trial; a spec may not choose them.
RESERVED = ("experiment_name", "root_output_dir")
_MAX_NAME = 180
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


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
    for candidate in (os.path.abspath(path), os.path.join(REPO_ROOT, path)):
        if os.path.isfile(candidate):
            return candidate
    raise UsageError(f"{where}: {path} not found (relative paths are tried from the "
                     f"current folder and from {REPO_ROOT})")


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


def expand(spec: Any, default_name: str, settings: type) -> Sweep:
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
    fields = {f.name: f for f in dataclasses.fields(settings)}
    types = typing.get_type_hints(settings)
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


def load(path: str, settings: type) -> Sweep:
    """Reads, validates and expands a YAML spec file."""

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
    return expand(spec, default, settings)

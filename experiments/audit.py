"""Memorisation audit: the same canaried training without and with DP, and each canary's exposure.

    ./run.sh audit [--noise_multiplier=0.5 --clip=0.3 --total_rounds=100 ...]

Trains two experiments on the same data with the same `--canaries` (see
`experiments.privacy.canaries`): `<name>_nodp` (unweighted FedAvg, no DP) and
`<name>_dp` (DP-FedAvg, `--dp=fixed` at `--clip` and `--noise_multiplier`),
each a normal results folder (resumable, with metrics.csv), then loads each
final checkpoint, computes every canary's exposure (Carlini et al. 2019) and
writes `audit.json` and `audit.md` to `--audit_output` (default
`<root_output_dir>/<name>/`). Defaults are chosen to be cheap (2NN, 10
clients per round, 100 rounds); every train flag can be given.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
from absl import flags

from experiments import config as config_lib
from experiments import train
from experiments.core import binary, errors, results, tff_worker
from experiments.core.settings import pick
from experiments.privacy.settings import CanarySettings

config_lib.define_flags()
flags.adopt_module_key_flags(config_lib)  # --helpshort lists the run's settings
flags.DEFINE_string("audit_output", "", "Folder for audit.json and audit.md (default: "
                    "<root_output_dir>/<experiment_name or audit>/).")
flags.DEFINE_integer("canary_candidates", 1000, "Text tasks: random digit strings each "
                     "canary is ranked among (exposure at most log2(candidates + 1)).",
                     lower_bound=1)
AUDIT_DEFAULTS = {"model": "2nn", "algorithm": "fedavg_unweighted", "canaries": 10,
                  "canary_repeats": 50, "total_rounds": 100, "rounds_per_eval": 50,
                  "clip": 0.3, "noise_multiplier": 0.5}
for _name, _value in AUDIT_DEFAULTS.items():
    flags.FLAGS.set_default(_name, _value)
FLAGS = flags.FLAGS


def with_task_defaults(values: dict, model_given: bool) -> dict:
    """The flag values with the task's default model unless --model was given (the
    audit's cheap `2nn` default is an EMNIST model)."""
    if values["task"] != "emnist_character" and not model_given:
        return {**values, "model": ""}
    return values


def arms(values: dict) -> dict[str, config_lib.ExperimentConfig]:
    """The non-DP and DP configs of an audit, validated, from the flag values."""
    if values["canaries"] <= 0:
        raise errors.UsageError("--canaries must be >= 1 for an audit")
    if values["dp"] != "none":
        raise errors.UsageError(f"--dp={values['dp']}: the audit runs --dp=none and "
                                f"--dp=fixed itself; leave --dp out")
    base = config_lib.ExperimentConfig(**values)
    name = base.experiment_name or "audit"
    configs = {
        "nodp": dataclasses.replace(base, dp="none", noise_multiplier=0.0,
                                    experiment_name=f"{name}_nodp"),
        "dp": dataclasses.replace(base, dp="fixed", experiment_name=f"{name}_dp"),
    }
    for config in configs.values():
        config_lib.validate(config)
    return configs


def _summary(records: list[dict]) -> dict:
    """Exposure statistics of inserted canaries and of controls."""
    out = {}
    for group, inserted in (("inserted", True), ("controls", False)):
        values = np.array([r["exposure"] for r in records if r["inserted"] is inserted])
        out[group] = {"mean": float(values.mean()), "median": float(np.median(values)),
                      "max": float(values.max()),
                      "rank_1": int(sum(1 for r in records if r["inserted"] is inserted
                                        and r["rank"] == 1))}
        fitted = [r["exposure_fit"] for r in records
                  if r["inserted"] is inserted and "exposure_fit" in r]
        if fitted:
            out[group]["fit_mean"] = float(np.mean(fitted))
    return out


def measure(path: str, candidates: int = 1000) -> dict:
    """Exposures of the canaries of the experiment at `path` (its final checkpoint)."""
    # Here, not at the top: TensorFlow stays out of the binary's start (--help).
    from experiments.privacy import canaries
    from experiments.training.federated_trainer import FederatedTrainer
    from tasks import registry

    hparams = results.load_hparams(path)
    config = config_lib.ExperimentConfig(**{
        f.name: hparams["config"].get(f.name, f.default)
        for f in dataclasses.fields(config_lib.ExperimentConfig)})
    task = registry.get(config.task, config.task_config())
    canary_settings = pick(CanarySettings, config)
    trainer = FederatedTrainer(config, canaries.insert(task, canary_settings, config.seed))
    checkpoint = results.Experiment(path, []).load_checkpoint()
    if checkpoint is None:
        raise errors.UsageError(f"{path} has no checkpoint to audit")
    model = task.build_model(config.seed)
    model.set_weights(trainer.model_weights(trainer.from_arrays(checkpoint[1])))
    records, most = canaries.measure(task, canary_settings, config.seed,
                                     lambda x: model(x, training=False).numpy(), candidates)
    summary = results.load_summary(path) or {}
    return {"path": path, "round": checkpoint[0], "dp": config.dp,
            "clients_per_round": config.clients_per_round,
            "population": hparams.get("data", {}).get("train_clients"),
            "data": hparams.get("data", {}).get("description", config.task),
            "canary_repeats": config.canary_repeats, "seed": config.seed,
            "noise_multiplier": config.noise_multiplier, "clip": config.clip,
            "epsilon_rdp": summary.get("epsilon_rdp"),
            "test_accuracy": summary.get("test_accuracy"),
            "task": config.task, "max_exposure": most,
            "exposure": _summary(records), "canaries": records}


MIN_CANARIES = 10  # below this, one canary moves a mean exposure by 10% or more


def _header(found: dict[str, dict]) -> list[str]:
    """What produced the audit: data, model size of the run, canaries, rounds, cohort."""
    some = next(iter(found.values()))
    canaries = len(some["canaries"]) // 2
    return ["# Memorisation audit", "",
            f"Data: {some['data']}; {canaries} canaries (each {some['canary_repeats']} "
            f"copies in one training client) and {canaries} never-inserted controls; "
            f"{some['round']} rounds of {some['clients_per_round']} clients"
            + (f" of {some['population']:,}" if some.get("population") else "")
            + f"; seed {some['seed']}. Arms: no DP, and DP (fixed clip {some['clip']}, "
            f"noise multiplier {found['dp']['noise_multiplier'] if 'dp' in found else '-'})."
            "", ""]


def _within_noise(records: list[dict]) -> tuple[float, float]:
    """(inserted mean - controls mean, two standard errors of that difference)."""
    groups = [np.array([r["exposure"] for r in records if r["inserted"] is flag], float)
              for flag in (True, False)]
    means = [g.mean() if len(g) else math.nan for g in groups]
    errors = [g.var(ddof=1) / len(g) if len(g) > 1 else math.inf for g in groups]
    return means[0] - means[1], 2 * math.sqrt(sum(errors))


def verdict(found: dict[str, dict]) -> list[str]:
    """Whether the sample can support a conclusion, by a stated rule.

    Rule: (1) at least MIN_CANARIES canaries; (2) each canary's client expected to
    train at least once (rounds x K / N >= 1), else there was nothing to memorise;
    (3) an arm's inserted canaries count as memorised only if their mean exposure
    exceeds the controls' by more than two standard errors of that difference, and
    the arms differ only if their differences do by more than two combined errors.
    """
    some = next(iter(found.values()))
    canaries = len(some["canaries"]) // 2
    notes = []
    if canaries < MIN_CANARIES:
        notes.append(f"Too few canaries for a conclusion: {canaries} < {MIN_CANARIES} "
                     f"(one canary moves a mean exposure by 1/{canaries} of its range).")
    if some.get("population"):
        trained = some["round"] * some["clients_per_round"] / some["population"]
        if trained < 1:
            notes.append(f"Too few rounds for a conclusion: each canary's client is "
                         f"expected to train {trained:.2f} times (rounds x K / N < 1).")
    gaps = {arm: _within_noise(r["canaries"]) for arm, r in found.items()}
    for arm, (gap, noise) in gaps.items():
        seen = "above" if gap > noise else "within noise of"
        notes.append(f"{arm}: inserted canaries' mean exposure is {seen} the controls' "
                     f"(difference {gap:.2f} bits, two standard errors {noise:.2f}).")
    if len(gaps) == 2:
        (a, (ga, na)), (b, (gb, nb)) = gaps.items()
        combined = math.hypot(na, nb)
        differ = abs(ga - gb) > combined
        notes.append(f"The arms {'differ' if differ else 'do not differ beyond noise'}: "
                     f"{a} - {b} = {ga - gb:.2f} bits against two combined standard "
                     f"errors of {combined:.2f}.")
    return ["## Can this sample support a conclusion?", "", *[f"- {n}" for n in notes], ""]


def report(found: dict[str, dict]) -> str:
    """audit.md: the settings, a table comparing the arms (text audits add the fitted
    exposure), and whether the sample is large enough to conclude anything."""
    fitted = all("fit_mean" in r["exposure"]["inserted"] for r in found.values())
    extra = " fitted exposure inserted / controls |" if fitted else ""
    lines = _header(found) + [
             "| run | epsilon (RDP) | test accuracy | exposure inserted mean / median / max "
             "| inserted at rank 1 | controls mean |" + extra,
             "|---|---|---|---|---|---|" + ("---|" if fitted else "")]
    for arm, r in found.items():
        e = r["exposure"]
        eps = r["epsilon_rdp"]
        eps_text = "inf" if eps is None or not np.isfinite(eps) else f"{eps:.1f}"
        line = (
            f"| {arm} (z={r['noise_multiplier']}, clip={r['clip'] if arm == 'dp' else '-'}) "
            f"| {eps_text} | {r['test_accuracy']:.3f} | {e['inserted']['mean']:.2f} / "
            f"{e['inserted']['median']:.2f} / {e['inserted']['max']:.2f} | "
            f"{e['inserted']['rank_1']} of {len(r['canaries']) // 2} | "
            f"{e['controls']['mean']:.2f} |")
        if fitted:
            line += f" {e['inserted']['fit_mean']:.2f} / {e['controls']['fit_mean']:.2f} |"
        lines.append(line)
    some = next(iter(found.values()))
    what = ("the image with each label is a candidate" if some.get("task", "emnist_character")
            == "emnist_character" else "'my secret number is' + random digits: the canary "
            "ranked by log-perplexity among random digit strings")
    lines.append(f"\nExposure = log2(candidates) - log2(rank), at most "
                 f"{some['max_exposure']:.2f} bits ({what}).")
    if fitted:
        lines.append("Fitted exposure: -log2 of a skew-normal fitted to the candidates' "
                     "losses at the canary's loss, at most log2 10^6 = 19.93 bits.")
    lines += ["", *verdict(found)]
    return "\n".join(lines) + "\n"


def audit(values: dict, output: str, candidates: int = 1000) -> dict:
    """Trains both arms, measures exposure, writes audit.json and audit.md."""
    configs = arms(values)
    paths = {arm: train.train(config)[0] for arm, config in configs.items()}
    with tff_worker.session():
        found = {arm: measure(path, candidates) for arm, path in paths.items()}
    os.makedirs(output, exist_ok=True)
    results.write_json(os.path.join(output, "audit.json"), found)
    text = report(found)
    results.atomic_write(os.path.join(output, "audit.md"), text.encode())
    return {"text": text, "output": output}


def _run() -> None:
    values = with_task_defaults(
        {f.name: FLAGS[f.name].value for f in dataclasses.fields(config_lib.ExperimentConfig)},
        FLAGS["model"].present)
    output = FLAGS.audit_output or os.path.join(
        values["root_output_dir"], values["experiment_name"] or "audit")
    done = audit(values, output, FLAGS.canary_candidates)
    print(done["text"])
    print(f"audit: {os.path.abspath(done['output'])}/audit.md, audit.json")


if __name__ == "__main__":
    binary.run("audit", _run)

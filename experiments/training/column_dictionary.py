"""What every metrics.csv column means, with its unit: written as columns.json per run.

One entry per fixed column, and patterns for the columns named after a task's
metrics (test_<metric>, naive_<metric>, fed_test_<metric>_<stat>, personal_...),
so a reader of any run folder can look a column up without the docs.
"""

from __future__ import annotations

import re

# column -> (meaning, unit)
FIXED: dict[str, tuple[str, str]] = {
    "round": ("the round this row is of (1-based)", "round"),
    "train_loss": ("mean training loss of the round's clients' local steps", "loss"),
    "train_examples": ("training examples the round's clients used", "examples"),
    "clients": ("clients whose update was aggregated this round", "clients"),
    "bytes_down_per_client": ("bytes each client downloaded (= bits_down / 8)", "bytes"),
    "bytes_up_per_client": ("bytes each client uploaded (= bits_up / 8)", "bytes"),
    "round_seconds": ("wall time of the round's training on this machine", "s"),
    "epsilon_rdp": ("epsilon spent up to this round, RDP accountant", "epsilon"),
    "epsilon_pld": ("epsilon spent up to this round, PLD accountant (eval rounds; blank "
                    "where PLD has no event for the sampling)", "epsilon"),
    "dp_delta": ("the delta both epsilons are at", "probability"),
    "accounted_population": ("N, the population the epsilon is of", "clients"),
    "accounted_cohort": ("K, the cohort per round the epsilon is of", "clients"),
    "dp_clip": ("the adaptive clip used from the next round (--dp=adaptive)", "L2 norm"),
    "bits_down_per_client": ("exact bits each client downloaded", "bits"),
    "bits_up_per_client": ("exact bits each client uploaded (payload, with compression "
                           "or distributed DP)", "bits"),
    "compression_factor": ("float32 upload bits / actual upload bits", "ratio"),
    "outlier_clients": ("outlier clients among the round's clients", "clients"),
    "secagg_survivors": ("clients whose input the secure sum decoded", "clients"),
    "secagg_bits_up_per_client": ("bits each client sent in the secure-sum protocol, all "
                                  "four rounds", "bits"),
    "secagg_extra_bits_up_per_client": ("the protocol's bits beyond a float32 update",
                                        "bits"),
    "secagg_messages": ("client-server messages of the protocol this round", "messages"),
    "ddp_wrapped_fraction": ("share of coordinates whose noisy sum wrapped around the "
                             "--num_bits field (distributed DP)", "fraction"),
    "eligible": ("clients eligible this round (population model)", "clients"),
    "selected": ("clients selected (with over-selection)", "clients"),
    "completed": ("selected clients that reported in time", "clients"),
    "dropped": ("selected clients that dropped out", "clients"),
    "late": ("selected clients past the round deadline", "clients"),
    "sim_round_seconds": ("simulated round time from device speeds and traffic", "s"),
    "test_loss": ("global model's loss on the eval split (eval rounds)", "loss"),
    "eval_seconds": ("wall time of this round's evaluation", "s"),
    "personal_clients": ("test clients scored for personalisation", "clients"),
    "personal_own_clients": ("test clients scored with a model of their own", "clients"),
}
_STAT = {"mean": "mean", "p10": "10th percentile", "p50": "median",
         "p90": "90th percentile"}
_STAGE = {"before": "the global model", "after": "the global model fine-tuned on the "
          "client's data", "own": "the client's own model (Ditto or local layers)"}


def describe(column: str) -> tuple[str, str]:
    """(meaning, unit) of a metrics.csv column; ValueError for an unknown one."""
    if column in FIXED:
        return FIXED[column]
    if m := re.fullmatch(r"train_(\w+)", column):
        return f"training {m[1]} of the round's clients", m[1]
    if m := re.fullmatch(r"fed_test_(\w+?)_(mean|p10|p50|p90)", column):
        return (f"{_STAT[m[2]]} over test clients of each client's {m[1]} under the "
                f"global model", m[1])
    if m := re.fullmatch(r"personal_(\w+?)_(before|after|own)_(mean|p10|p50|p90)", column):
        return f"{_STAT[m[3]]} over test clients of {m[1]} with {_STAGE[m[2]]}", m[1]
    if m := re.fullmatch(r"test_(\w+)", column):
        return f"global model's {m[1]} on the eval split (eval rounds)", m[1]
    if m := re.fullmatch(r"naive_(\w+)", column):
        return (f"{m[1]} of the naive predictor (majority class / mean target) on the "
                f"same split: the floor", m[1])
    raise ValueError(f"no meaning recorded for metrics.csv column {column!r}")


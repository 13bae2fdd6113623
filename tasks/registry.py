"""The single registry of tasks by name (names as in google-research/federated)."""

from __future__ import annotations

from collections.abc import Callable

from experiments.core.errors import UsageError
from tasks import (
    cmapss,
    emnist,
    emnist_autoencoder,
    heatmap,
    repartition,
    shakespeare,
    stackoverflow_tag,
    stackoverflow_word,
)
from tasks.settings import TaskConfig
from tasks.task import Task

_BUILDERS: dict[str, Callable[[TaskConfig], Task]] = {
    "emnist_character": emnist.build_task,
    "cmapss_rul": cmapss.build_task,
    "heatmap": heatmap.build_task,
    "stackoverflow_word": stackoverflow_word.build_task,
    "stackoverflow_tag": stackoverflow_tag.build_task,
    "shakespeare_character": shakespeare.build_task,
    "emnist_autoencoder": emnist_autoencoder.build_task,
}


def names() -> list[str]:
    """Registered task names, for flag validation and help text."""
    return sorted(_BUILDERS)


def get(name: str, config: TaskConfig) -> Task:
    """Builds the task called `name`, or raises a UsageError listing valid ones."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise UsageError(
            f"--task={name} is unknown; valid: {', '.join(names())}"
        ) from None
    return repartition.apply(builder(config), config)

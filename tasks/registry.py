"""The single registry of tasks by name (names as in google-research/federated)."""

from __future__ import annotations

from collections.abc import Callable

from experiments.errors import UsageError
from tasks import emnist
from tasks.task import Task, TaskConfig

_BUILDERS: dict[str, Callable[[TaskConfig], Task]] = {
    "emnist_character": emnist.build_task,
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
    return builder(config)

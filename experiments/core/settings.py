"""Settings groups: small frozen dataclasses whose fields are flags.

Each concern declares its own group beside the code that uses it (the DP
mechanism's in `experiments.privacy.settings`, the population's in
`experiments.simulation.population`, ...), with each field's help text and
choices. The binaries' `ExperimentConfig` is composed of these groups, so a
setting is declared once, its flag is generated from it, and library code
receives only the group it needs (`pick(DpSettings, config)`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

Group = TypeVar("Group")


def setting(default: Any, help_text: str, choices: tuple[str, ...] | None = None
            ) -> Any:
    """A settings field: its default, its flag's help text and (for enums) its choices."""
    return dataclasses.field(default=default, metadata={"help": help_text, "choices": choices})


def pick(group: type[Group], source: Any) -> Group:
    """The `group` of settings read by field name from `source` (e.g. an ExperimentConfig)."""
    return group(**{f.name: getattr(source, f.name) for f in dataclasses.fields(group)})

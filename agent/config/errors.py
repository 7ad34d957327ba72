"""Config problems as values, and the one exception that carries all of them.

Loading never stops at the first mistake: every file and flag is checked and
each problem becomes a `ConfigProblem` naming where it came from (a file path
or "flag --x"), the key, and what is wrong. `ConfigError` is raised once, at
the end, with the whole list, so an operator fixes a config in one pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime

MERGED = "config"  # source named by problems that only exist after merging

# Long values are cut in messages: a pasted certificate should not flood the log.
_MAX_SHOWN = 60


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the config; `key` is "" for whole-file problems."""

    source: str
    key: str
    message: str

    def __str__(self) -> str:
        if self.key:
            return f"{self.source}: {self.key}: {self.message}"
        return f"{self.source}: {self.message}"


class ConfigError(Exception):
    """Every problem found while loading the agent config, one line each."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def describe(value: object) -> str:
    """Show a user's value the way they wrote it in YAML, quoted and cut short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        shown = value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "..."
        return json.dumps(shown, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime | date):
        return f"a date ({value.isoformat()})"
    return f"a {type(value).__name__}"

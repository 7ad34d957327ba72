"""What is wrong with a policy's rules: every problem at once, each at its position.

A position is "line L, column C" for HCL and JSON syntax, or the dotted path
of the key (`service.web.policy`) for JSON content, so a 400 points at what
the user wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_COLUMN = re.compile(r"line (\d+), column (\d+)")


@dataclass(frozen=True)
class RuleProblem:
    """One thing wrong with a rules text, at one position."""

    position: str
    message: str

    def __str__(self) -> str:
        return f"{self.position}: {self.message}"


def _order(problem: RuleProblem) -> tuple[int, int]:
    found = _LINE_COLUMN.match(problem.position)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


class RulesInvalid(ValueError):
    """Rules that do not parse or do not validate; carries every problem found, in text order."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = sorted(problems, key=_order)
        super().__init__("invalid rules: " + "; ".join(str(p) for p in problems))

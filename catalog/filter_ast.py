"""The tree a ``?filter=`` expression parses into, and the one error of the language.

Pure values, shared by the parser (`filter_parse`), the schema check
(`filter_schema`) and the evaluator (`filter_eval`). Rules it keeps:

* Operators are kept as spelled in the language (``"not in"``), so an error
  message can quote what the user wrote.
* Values stay raw text (`Value.raw`): go-bexpr coerces them late, against
  the type of the field they are compared with.
* ``and``/``or`` are flat n-ary nodes, never nested pairs, so no chain of
  them can exhaust the Python stack when walked.
"""

from __future__ import annotations

from dataclasses import dataclass

# Match operators, spelled as in the language.
EQ, NE = "==", "!="
IN, NOT_IN, CONTAINS, NOT_CONTAINS = "in", "not in", "contains", "not contains"
MATCHES, NOT_MATCHES = "matches", "not matches"
IS_EMPTY, IS_NOT_EMPTY = "is empty", "is not empty"


class FilterError(ValueError):
    """A filter expression that cannot be parsed, validated or evaluated.

    `message` names the problem; `position` is the 1-based column in the
    expression it refers to (None if it refers to no single place).
    ``str()`` gives the full text for an HTTP 400 body.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        self.message = message
        self.position = position
        where = f" at column {position}" if position is not None else ""
        super().__init__(f"filter: {message}{where}")


@dataclass(frozen=True)
class Value:
    """A literal as written: bexpr keeps values raw and coerces them late."""

    raw: str
    position: int


@dataclass(frozen=True)
class Match:
    selector: tuple[str, ...]
    op: str
    value: Value | None  # None for "is empty" / "is not empty"
    position: int  # column of the selector

    @property
    def selector_text(self) -> str:
        return ".".join(self.selector)


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Match | Not | And | Or

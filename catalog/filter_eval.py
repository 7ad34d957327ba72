"""Evaluation of a parsed filter against one JSON-shaped record.

Pure functions over the AST of `filter_parse`, a schema of `filter_schema`
(or none) and a record. The rules (go-bexpr's, as Consul uses it) are
described in `filter`'s docstring; this module is their implementation:
a selector walks struct fields, map keys, and lists of objects with
ANY-element semantics; a missing map key is "not present"; a missing or
null struct field has its Go zero value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gossamer.catalog.filter_ast import (
    CONTAINS,
    EQ,
    IN,
    IS_EMPTY,
    IS_NOT_EMPTY,
    MATCHES,
    NE,
    NOT_CONTAINS,
    NOT_IN,
    NOT_MATCHES,
    And,
    FilterError,
    Match,
    Node,
    Not,
    Or,
)
from gossamer.catalog.filter_schema import FieldType, ListOf, MapOf, Scalar, Struct
from gossamer.catalog.filter_values import Pattern, article, coerce, compile_regex

_NEGATED = {
    NE: EQ,
    NOT_IN: IN,
    NOT_CONTAINS: CONTAINS,
    NOT_MATCHES: MATCHES,
    IS_NOT_EMPTY: IS_EMPTY,
}
# What a missing map key answers (bexpr's "not present" disposition): nothing
# equals, contains or matches it, and it is empty.
_ABSENT = {EQ: False, IN: False, CONTAINS: False, MATCHES: False, IS_EMPTY: True}


def _zero(ftype: FieldType | None) -> Any:
    """The value a field absent from a record has (Go's zero value)."""
    if isinstance(ftype, Scalar):
        return {"string": "", "int": 0, "float": 0.0, "bool": False}[ftype.kind]
    if isinstance(ftype, ListOf):
        return []
    return {} if ftype is not None else None


def _field(record: Mapping[str, Any], name: str) -> Any:
    """A struct field of a JSON record: exact key first, else case-insensitively."""
    if name in record:
        return record[name]
    folded = name.casefold()
    for key, value in record.items():
        if isinstance(key, str) and key.casefold() == folded:
            return value
    return None


class Evaluator:
    def __init__(self, schema: Struct | None, regexes: Mapping[Match, Pattern]) -> None:
        self.schema = schema
        self.regexes = regexes

    def run(self, node: Node, record: Any) -> bool:
        if isinstance(node, Not):
            return not self.run(node.operand, record)
        if isinstance(node, And):
            return all(self.run(operand, record) for operand in node.operands)
        if isinstance(node, Or):
            return any(self.run(operand, record) for operand in node.operands)
        return self.walk(node, record, self.schema, 0)

    def walk(self, match: Match, value: Any, ftype: FieldType | None, depth: int) -> bool:
        if value is None:
            if ftype is None:
                return self.absent(match)
            value = _zero(ftype)
        if depth == len(match.selector):
            return self.apply(match, value)
        if isinstance(value, list):
            # A path through a list asks about ANY element (bexpr): Checks.Status == x.
            item = ftype.item if isinstance(ftype, ListOf) else None
            return any(self.walk(match, element, item, depth) for element in value)
        part = match.selector[depth]
        if isinstance(value, Mapping):
            if isinstance(ftype, Struct):
                sub_type = ftype.fields.get(part)
                return self.walk(match, _field(value, part), sub_type, depth + 1)
            if part not in value:
                if ftype is None and depth == 0:
                    raise FilterError(f'unknown selector "{match.selector_text}"', match.position)
                return self.absent(match)
            sub_type = ftype.value if isinstance(ftype, MapOf) else None
            return self.walk(match, value[part], sub_type, depth + 1)
        prefix = ".".join(match.selector[:depth])
        raise FilterError(
            f'selector "{prefix}" is a {_kind_of(value)} and has no field "{part}"',
            match.position,
        )

    def absent(self, match: Match) -> bool:
        base = _NEGATED.get(match.op, match.op)
        return _ABSENT[base] != (base != match.op)

    def apply(self, match: Match, value: Any) -> bool:
        base = _NEGATED.get(match.op, match.op)
        if base == EQ:
            result = self.equal(match, value)
        elif base in (IN, CONTAINS):
            result = self.contains(match, value)
        elif base == IS_EMPTY:
            if not isinstance(value, str | list | Mapping):
                raise self.unsupported(match, value)
            result = len(value) == 0
        else:
            if not isinstance(value, str):
                raise self.unsupported(match, value)
            pattern = self.regexes.get(match) or compile_regex(match)
            result = pattern.search(value) is not None
        return result != (base != match.op)

    def equal(self, match: Match, value: Any) -> bool:
        if isinstance(value, str | bool | int | float):
            return bool(value == coerce(match, _kind_of(value)))
        raise self.unsupported(match, value)

    def contains(self, match: Match, value: Any) -> bool:
        assert match.value is not None
        if isinstance(value, str):
            return match.value.raw in value
        if isinstance(value, Mapping):
            return match.value.raw in value
        if isinstance(value, list):
            for element in value:
                if isinstance(element, str | bool | int | float):
                    try:
                        if element == coerce(match, _kind_of(element)):
                            return True
                    except FilterError:
                        continue  # mixed lists: skip what the value cannot be (bexpr)
            return False
        raise self.unsupported(match, value)

    def unsupported(self, match: Match, value: Any) -> FilterError:
        return FilterError(
            f'operator "{match.op}" cannot be used on selector "{match.selector_text}" '
            f"({article(_kind_of(value))} {_kind_of(value)})",
            match.position,
        )


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "map" if isinstance(value, Mapping) else type(value).__name__

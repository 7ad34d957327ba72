"""Meaning of a parsed filter: selector schemas, validation and evaluation.

Pure functions over the AST of `filter_parse` and JSON-shaped records.
The rules (go-bexpr's, as Consul uses it) are described in `filter`'s
docstring; this module is their implementation:

* `validate` checks every selector and operator against a `Struct` schema
  and coerces values once, so a bad filter is a 400 before any row is read.
* `evaluate` walks a selector through a record: struct fields, map keys,
  and lists of objects with ANY-element semantics.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gossamer.catalog.filter_parse import (
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

# -- schemas --------------------------------------------------------------


@dataclass(frozen=True)
class Scalar:
    kind: Literal["string", "int", "float", "bool"]


@dataclass(frozen=True)
class ListOf:
    item: FieldType


@dataclass(frozen=True)
class MapOf:
    """A map with arbitrary string keys (Meta, NodeMeta, TaggedAddresses...)."""

    value: FieldType


@dataclass(frozen=True, eq=False)
class Struct:
    """An object with a fixed set of fields; a schema is the top-level Struct."""

    fields: Mapping[str, FieldType]


FieldType = Scalar | ListOf | MapOf | Struct
STRING, INT, FLOAT, BOOL = Scalar("string"), Scalar("int"), Scalar("float"), Scalar("bool")

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
_EQUALITY = (EQ, NE)
_MEMBERSHIP = (IN, NOT_IN, CONTAINS, NOT_CONTAINS)
_EMPTINESS = (IS_EMPTY, IS_NOT_EMPTY)
_ALLOWED: dict[str, tuple[str, ...]] = {
    "string": _EQUALITY + _MEMBERSHIP + (MATCHES, NOT_MATCHES) + _EMPTINESS,
    "int": _EQUALITY,
    "float": _EQUALITY,
    "bool": _EQUALITY,
    "list": _MEMBERSHIP + _EMPTINESS,
    "list of objects": _EMPTINESS,
    "map": _MEMBERSHIP + _EMPTINESS,
    "object": (),
}


def _describe(ftype: FieldType) -> str:
    if isinstance(ftype, Scalar):
        return ftype.kind
    if isinstance(ftype, ListOf):
        return "list" if isinstance(ftype.item, Scalar) else "list of objects"
    return "map" if isinstance(ftype, MapOf) else "object"


def resolve(schema: Struct, selector: tuple[str, ...]) -> FieldType | None:
    """The type `selector` names in `schema`, or None if it names nothing."""
    ftype: FieldType = schema
    for part in selector:
        while isinstance(ftype, ListOf) and not isinstance(ftype.item, Scalar):
            ftype = ftype.item  # a path through a list of objects reaches into each
        if isinstance(ftype, Struct):
            if part not in ftype.fields:
                return None
            ftype = ftype.fields[part]
        elif isinstance(ftype, MapOf):
            ftype = ftype.value
        else:
            return None
    return ftype


def validate(node: Node, schema: Struct) -> None:
    """Check selectors, operators and values of `node` against `schema`."""
    if isinstance(node, Not):
        validate(node.operand, schema)
    elif isinstance(node, And | Or):
        for operand in node.operands:
            validate(operand, schema)
    else:
        ftype = resolve(schema, node.selector)
        if ftype is None:
            raise FilterError(f'unknown selector "{node.selector_text}"', node.position)
        kind = _describe(ftype)
        if node.op not in _ALLOWED[kind]:
            raise FilterError(
                f'operator "{node.op}" cannot be used on selector "{node.selector_text}" '
                f"({_article(kind)} {kind})",
                node.position,
            )
        target = ftype.item if isinstance(ftype, ListOf) else ftype
        if node.value is not None and isinstance(target, Scalar) and target.kind != "string":
            coerce(node, target.kind)


# -- values ---------------------------------------------------------------

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT64 = range(-(2**63), 2**63)


def coerce(match: Match, kind: str) -> str | int | float | bool:
    """The match value converted to `kind`, as Go's strconv would, or FilterError."""
    assert match.value is not None
    raw = match.value.raw
    if kind == "string":
        return raw
    try:
        if kind == "bool":
            if raw in _GO_TRUE or raw in _GO_FALSE:
                return raw in _GO_TRUE
            raise ValueError(raw)
        if raw != raw.strip() or not raw:
            raise ValueError(raw)
        if kind == "int":
            sign, digits = (raw[0], raw[1:]) if raw[0] in "+-" else ("", raw)
            if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
                number = int(sign + digits[1:], 8)  # Go: a leading 0 means octal
            else:
                number = int(raw, 0)
            if number not in _INT64:
                raise ValueError(raw)
            return number
        if "_" in raw:  # Python's float() takes "1_0", Go's ParseFloat does not
            raise ValueError(raw)
        return float(raw)
    except ValueError:
        raise FilterError(
            f'value "{raw}" is not {_article(kind)} {kind}, '
            f'as selector "{match.selector_text}" needs',
            match.value.position,
        ) from None


# Escapes, character classes (skipped whole), and the group openers RE2 lacks:
# lookahead/lookbehind, named backreferences and atomic groups.
_RE2_UNSUPPORTED = re.compile(r"\\.|\[(?:\\.|[^\]\\])*\]|\(\?(?:<?[=!]|P=|>)")


def compile_regex(match: Match) -> re.Pattern[str]:
    """Compile a ``matches`` value with Python re, refusing what RE2 refuses."""
    assert match.value is not None
    pattern = match.value.raw
    for found in _RE2_UNSUPPORTED.finditer(pattern):
        token = found.group()
        if token.startswith("(?") or (token[:1] == "\\" and token[1:2] in "123456789"):
            raise FilterError(
                f'regular expression "{pattern}" uses "{token}", which RE2 does not support',
                match.value.position,
            )
    try:
        with warnings.catch_warnings():  # "possible nested set" ([[): re and RE2 agree today
            warnings.simplefilter("ignore", FutureWarning)
            return re.compile(re.sub(r"(?<!\\)((?:\\\\)*)\\z", r"\1\\Z", pattern))
    except (re.error, OverflowError, RecursionError) as exc:
        raise FilterError(
            f'invalid regular expression "{pattern}": {exc}', match.value.position
        ) from None


# -- evaluation -------------------------------------------------------------


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
    def __init__(self, schema: Struct | None, regexes: Mapping[Match, re.Pattern[str]]) -> None:
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
            f"({_article(_kind_of(value))} {_kind_of(value)})",
            match.position,
        )


def _article(noun: str) -> str:
    return "an" if noun[:1] in ("a", "e", "i", "o", "u") else "a"


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

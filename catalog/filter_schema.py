"""Selector schemas of the ``?filter=`` language, and the check of an expression against one.

A schema is the `Struct` of a row an endpoint returns (the tables are in
`filter`); its fields are scalars, lists, string-keyed maps or nested
structs. Pure. Rules it keeps (go-bexpr's, as Consul uses it):

* `validate` checks every selector and operator, and coerces every
  non-string value once, so a bad filter is a 400 before any row is read.
* A selector through a list of objects reaches into each element
  (``Checks.Status``); a map accepts any key; selector names are
  case-sensitive.
* Which operator goes with which kind of field is one table, `_ALLOWED`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

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
    Node,
    Not,
    Or,
)
from gossamer.catalog.filter_values import article, coerce


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
                f"({article(kind)} {kind})",
                node.position,
            )
        target = ftype.item if isinstance(ftype, ListOf) else ftype
        if node.value is not None and isinstance(target, Scalar) and target.kind != "string":
            coerce(node, target.kind)

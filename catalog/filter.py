"""Consul's ``?filter=`` expressions (go-bexpr), over the JSON rows the API returns.

Pure: no I/O. An HTTP handler calls ``filter_rows(request.query.get("filter"),
rows, CATALOG_SERVICE)`` and turns a `FilterError` into a 400 whose body is
``str(error)``, e.g. ``filter: unknown selector "Foo" at column 1``.

Language (Consul's "Filtering" API page; go-bexpr's grammar):
``==  !=  in  not in  contains  not contains  matches  not matches  is empty
is not empty``, joined by ``not`` > ``and`` > ``or`` and parentheses. Values
are "double-quoted" (Go escapes), `raw` (backticks), numbers, or bare words
(``Status == passing``). Selectors are dotted (``Service.Meta.env``), with
``Meta["any key"]`` for keys that are not identifiers; ``"v" in Sel`` puts
the selector on the right, ``Sel contains "v"`` on the left (same meaning).

Semantics, following go-bexpr as Consul uses it:

* ``==``/``!=`` compare a scalar field with the value converted to the
  field's type the way Go's strconv would (``ServicePort == 80``,
  ``EnableTagOverride == true``, ``1``/``t``/``True`` are true). A value that
  does not convert is a `FilterError` -- at parse time when a schema gives
  the type, else when a row is evaluated.
* ``in``/``contains`` mean element membership for lists, key membership for
  maps (``"env" in Meta``) and substring for strings.
* ``matches`` is an unanchored regex search (Go's ``Regexp.Match``), run with
  Python's ``re``: RE2 syntax is close to it; backreferences and lookaround,
  which RE2 rejects, are rejected here too, and ``\\z`` is translated. Unlike
  RE2, ``re`` backtracks: a pathological pattern can be slow (open risk).
* ``is empty`` is true for an empty string, list or map (Consul documents it
  for lists and maps only; strings are accepted as newer bexpr does).
* A missing map key (``Meta.nope``) is neither equal to, in, nor matched by
  anything, and is empty -- bexpr's "not present" rule. So ``Meta.nope !=
  "x"`` and ``Meta.nope is empty`` are true, and ``Meta.nope == ""`` is false:
  only that, ``contains ""`` and regexes matching "" differ from treating the
  key as an empty string.
* A struct field missing from the JSON row, or null, has its Go zero value
  ("" / 0 / false / empty list or map), as in Consul where the struct always
  has every field.
* A selector through a list of objects (``Checks.Status``) is true when ANY
  element satisfies the whole match -- including negated operators: on
  /v1/health/service, ``Checks.Status != passing`` means "some check is not
  passing", ``not Checks.Status != passing`` means "all checks pass" (also
  true with no checks: an empty list has no element that matches anything).
  go-bexpr's reflection evaluator iterates the slice and returns on the first
  true element.
* With a schema, selectors and operators are checked before any row is read,
  as bexpr checks them against the Go struct: unknown selectors, ``==`` on a
  list, ``matches`` on a number... are errors naming the selector. Map-typed
  fields accept any key. Selector names are case-sensitive; a struct field is
  looked up in the JSON row exactly, then case-insensitively (Consul's JSON
  is not uniformly cased, e.g. TaggedAddresses' ``address``/``port``).
* Without a schema, every JSON object is a map: a missing top-level field is
  an unknown selector, a missing nested key is "not present".
* Not supported: newer bexpr's JSON-pointer selectors (``"/a/b" == x``) and
  its ``any``/``all`` collection expressions, which Consul does not document.

The ready schemas below are Consul's documented selector tables for each
endpoint (Consul API docs, "Filtering" sections).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gossamer.catalog.filter_ast import MATCHES, NOT_MATCHES, And, FilterError, Match, Node, Not, Or
from gossamer.catalog.filter_eval import Evaluator
from gossamer.catalog.filter_parse import parse_ast
from gossamer.catalog.filter_schema import (
    BOOL,
    INT,
    STRING,
    FieldType,
    ListOf,
    MapOf,
    Scalar,
    Struct,
    validate,
)
from gossamer.catalog.filter_values import Pattern, compile_regex

__all__ = [
    "AGENT_CHECK",
    "AGENT_SERVICE",
    "CATALOG_NODE",
    "CATALOG_SERVICE",
    "HEALTH_CHECK",
    "HEALTH_SERVICE",
    "INTENTION",
    "Expression",
    "FieldType",
    "FilterError",
    "ListOf",
    "MapOf",
    "Scalar",
    "Struct",
    "filter_rows",
    "filter_values",
    "parse",
    "validate_selectors",
]

MAX_LENGTH = 16384  # characters; far beyond real filters, and above any URL aiohttp accepts


class Expression:
    """A parsed (and, with a schema, validated) filter. Immutable, thread-safe."""

    def __init__(self, text: str, root: Node, schema: Struct | None) -> None:
        self.text = text
        self.root = root
        self.schema = schema
        self._evaluator = Evaluator(schema, _compile_regexes(root))

    def evaluate(self, record: Mapping[str, Any]) -> bool:
        """True if `record` passes the filter; FilterError if it cannot be evaluated."""
        return self._evaluator.run(self.root, record)

    def selectors(self) -> list[str]:
        """Every selector the expression uses, in order of appearance."""
        return [match.selector_text for match in _matches(self.root)]

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def parse(text: str, schema: Struct | None = None) -> Expression:
    """Parse `text`; with `schema`, also validate its selectors, operators and values."""
    if len(text) > MAX_LENGTH:
        raise FilterError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    root = parse_ast(text)
    if schema is not None:
        validate(root, schema)
    return Expression(text, root, schema)


def validate_selectors(expr: Expression, allowed: Struct) -> Expression:
    """`expr` checked against `allowed`, returned bound to it (FilterError if invalid)."""
    validate(expr.root, allowed)
    return Expression(expr.text, expr.root, allowed)


def filter_rows(
    expr_text: str | None, rows: Iterable[Mapping[str, Any]], schema: Struct | None
) -> list[Any]:
    """The rows that pass `expr_text`; all of them when it is None or blank."""
    if expr_text is None or not expr_text.strip():
        return list(rows)
    expr = parse(expr_text, schema)
    return [row for row in rows if expr.evaluate(row)]


def filter_values(
    expr_text: str | None, mapping: Mapping[str, Mapping[str, Any]], schema: Struct | None
) -> dict[str, Any]:
    """For map-shaped answers (/v1/agent/services, /v1/agent/checks): filter the values."""
    if expr_text is None or not expr_text.strip():
        return dict(mapping)
    expr = parse(expr_text, schema)
    return {key: value for key, value in mapping.items() if expr.evaluate(value)}


def _matches(node: Node) -> Iterable[Match]:
    if isinstance(node, Match):
        yield node
    elif isinstance(node, Not):
        yield from _matches(node.operand)
    elif isinstance(node, And | Or):
        for operand in node.operands:
            yield from _matches(operand)


def _compile_regexes(root: Node) -> dict[Match, Pattern]:
    return {m: compile_regex(m) for m in _matches(root) if m.op in (MATCHES, NOT_MATCHES)}


# -- Consul's documented selectors, per endpoint ----------------------------


def _struct(string_fields: str, **fields: FieldType) -> Struct:
    """A Struct with the blank-separated `string_fields` as strings, plus `fields`."""
    return Struct({**dict.fromkeys(string_fields.split(), STRING), **fields})


_WEIGHTS = _struct("", Passing=INT, Warning=INT)
_MESH_GATEWAY = _struct("Mode")
_UPSTREAM = _struct(
    "Datacenter DestinationName DestinationNamespace DestinationType LocalBindAddress",
    LocalBindPort=INT,
    MeshGateway=_MESH_GATEWAY,
)
_PROXY = _struct(
    "DestinationServiceID DestinationServiceName LocalServiceAddress Mode",
    LocalServicePort=INT,
    TransparentProxy=_struct("", OutboundListenerPort=INT),
    MeshGateway=_MESH_GATEWAY,
    Upstreams=ListOf(_UPSTREAM),
)
_SERVICE_ADDRESSES = MapOf(_struct("Address", Port=INT))
_STRING_MAP = MapOf(STRING)
_CONNECT = _struct("", Native=BOOL)

#: /v1/catalog/nodes rows.
CATALOG_NODE = _struct("Address Datacenter ID Node", Meta=_STRING_MAP, TaggedAddresses=_STRING_MAP)

#: /v1/catalog/service/<name> and /v1/catalog/connect/<name> rows.
CATALOG_SERVICE = _struct(
    "Address Datacenter ID Node ServiceAddress ServiceID ServiceKind ServiceName",
    NodeMeta=_STRING_MAP,
    ServiceConnect=_CONNECT,
    ServiceEnableTagOverride=BOOL,
    ServiceMeta=_STRING_MAP,
    ServicePort=INT,
    ServiceProxy=_PROXY,
    ServiceTaggedAddresses=_SERVICE_ADDRESSES,
    ServiceTags=ListOf(STRING),
    ServiceWeights=_WEIGHTS,
    TaggedAddresses=_STRING_MAP,
)

#: Values of /v1/agent/services (and the Service of a /v1/health/service row).
AGENT_SERVICE = _struct(
    "Address ID Kind Service",
    Connect=_CONNECT,
    EnableTagOverride=BOOL,
    Meta=_STRING_MAP,
    Port=INT,
    Proxy=_PROXY,
    TaggedAddresses=_SERVICE_ADDRESSES,
    Tags=ListOf(STRING),
    Weights=_WEIGHTS,
)

#: /v1/health/node, /v1/health/checks, /v1/health/state rows.
HEALTH_CHECK = _struct(
    "CheckID Name Node Notes Output ServiceID ServiceName Status", ServiceTags=ListOf(STRING)
)

#: Values of /v1/agent/checks: the same selectors as the health endpoints.
AGENT_CHECK = HEALTH_CHECK

#: /v1/health/service/<name> and /v1/health/connect/<name> rows.
HEALTH_SERVICE = Struct(
    {"Node": CATALOG_NODE, "Service": AGENT_SERVICE, "Checks": ListOf(HEALTH_CHECK)}
)

#: /v1/connect/intentions rows.
INTENTION = _struct(
    "Action Description DestinationNS DestinationName ID SourceNS SourceName SourceType",
    Meta=_STRING_MAP,
    Precedence=INT,
)

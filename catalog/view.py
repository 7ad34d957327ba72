"""Pure catalog queries over a frozen view: instances, tags, node-meta, filters, `near`.

The HTTP handlers, and the proxy when it picks an upstream instance, ask the
same questions of the merged catalog; they live here once. No I/O: a `View` is
a snapshot of `merge.CatalogState` with each node's modification index.

Consul's rules kept here:
- ``tag`` is repeatable and every one must match, compared case-insensitively
  (Consul lower-cases both sides, state/catalog.go serviceTagFilter).
- ``node-meta`` pairs must all match.
- ``near`` sorts by network distance from a node. The only distance known
  here is zero: the named node comes first and the rest keep their order.
- ``passing`` keeps an instance only if every check that decides it (node
  checks, serfHealth included, and its own) is ``passing``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from gossamer.catalog import merge
from gossamer.catalog.blocking import IndexTable, node_key, response_index
from gossamer.catalog.filter import Expression
from gossamer.catalog.model import Check, NodeRecord, Service

CONNECT_PROXY = "connect-proxy"
PASSING = "passing"

T = TypeVar("T")


@dataclass(frozen=True)
class ReadQuery:
    """The parsed read parameters of one request (absent ones are empty)."""

    tags: tuple[str, ...] = ()
    node_meta: tuple[tuple[str, str], ...] = ()
    near: str = ""
    filter: Expression | None = None


@dataclass(frozen=True)
class View:
    """The merged catalog of our datacenter at one instant, and each node's row index."""

    state: merge.CatalogState
    datacenter: str
    node_index: Callable[[str], int]

    def records(self) -> list[NodeRecord]:
        return merge.nodes(self.state, self.datacenter)

    def record(self, node: str) -> NodeRecord | None:
        """By name, else by node ID (Consul accepts either where it names a node)."""
        found = merge.get(self.state, self.datacenter, node)
        if found is None and node:
            found = next((r for r in self.records() if r.node_id == node), None)
        return found

    def checks(self, record: NodeRecord) -> tuple[Check, ...]:
        """All of the node's checks, serfHealth from gossip included."""
        return merge.node_checks(self.state, record)

    def instance_checks(self, record: NodeRecord, service_id: str) -> tuple[Check, ...]:
        return merge.service_checks(self.state, record, service_id)

    def index(self, record: NodeRecord) -> int:
        return self.node_index(record.node)


class Snapshottable(Protocol):
    """What a view is taken of: the live catalog, read without touching its I/O side."""

    @property
    def state(self) -> merge.CatalogState: ...
    @property
    def datacenter(self) -> str: ...
    @property
    def indexes(self) -> IndexTable: ...


def view_of(catalog: Snapshottable) -> View:
    table = catalog.indexes
    return View(
        catalog.state, catalog.datacenter, lambda n: response_index(table.index_for(node_key(n)))
    )


def meta_matches(record: NodeRecord, node_meta: Sequence[tuple[str, str]]) -> bool:
    return all(record.meta.get(k) == v for k, v in node_meta)


def has_tags(service: Service, wanted: Sequence[str]) -> bool:
    """`wanted` is already lower-cased; every one must be among the service's tags."""
    mine = {t.lower() for t in service.tags}
    return all(t in mine for t in wanted)


def serves_connect(service: Service, name: str) -> bool:
    """A mesh endpoint for `name`: its sidecar proxy, or `name` itself if Connect-native."""
    if service.kind == CONNECT_PROXY and service.proxy.get("DestinationServiceName") == name:
        return True
    return service.name == name and service.connect.get("Native") is True


def by_name(name: str) -> Callable[[Service], bool]:
    return lambda s: s.name == name


def by_connect(name: str) -> Callable[[Service], bool]:
    return lambda s: serves_connect(s, name)


def instances(
    view: View,
    selects: Callable[[Service], bool],
    node_meta: Sequence[tuple[str, str]] = (),
    tags: Sequence[str] = (),
) -> list[tuple[NodeRecord, Service]]:
    """(node, service) pairs selected, on nodes matching node-meta, with all the tags."""
    return [
        (r, s)
        for r in view.records()
        if meta_matches(r, node_meta)
        for s in r.services
        if selects(s) and has_tags(s, tags)
    ]


def node_keys(view: View, node: str) -> list[str]:
    """Index keys of a node named by name or ID (both, so either change wakes it)."""
    record = view.record(node)
    return sorted({node_key(node)} | ({node_key(record.node)} if record else set()))


def keep(expr: Expression | None, rows: Iterable[T], as_json: Callable[[T], Any]) -> list[T]:
    """The rows whose JSON passes the filter (all of them without one)."""
    return [row for row in rows if expr is None or expr.evaluate(as_json(row))]


def near_first(rows: Iterable[T], near: str, node_of: Callable[[T], str]) -> list[T]:
    """Rows of the `near` node first, otherwise in the given (sorted) order."""
    ordered = list(rows)
    if not near:
        return ordered
    return sorted(ordered, key=lambda row: node_of(row) != near)


def instance_health(
    view: View,
    selects: Callable[[Service], bool],
    query: ReadQuery,
    *,
    passing: bool,
) -> list[tuple[NodeRecord, Service, tuple[Check, ...]]]:
    """Selected instances with the checks that decide them; only all-passing ones if asked."""
    found = []
    for record, service in instances(view, selects, query.node_meta, query.tags):
        checks = view.instance_checks(record, service.id)
        if passing and any(c.status != PASSING for c in checks):
            continue
        found.append((record, service, checks))
    return found

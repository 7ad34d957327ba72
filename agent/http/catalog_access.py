"""What the catalog and health handlers share: the LiveCatalog, their query parameters, a view.

The integrator sets ``app[CATALOG_KEY] = live_catalog``; handlers get it with
`catalog_of`. `read_query` parses the parameters common to Consul's read
endpoints (``dc``, ``tag``, ``node-meta``, ``near``, ``filter``)
before anything waits, so bad input is a 400 at once. `View` is a frozen
snapshot of the merged state with the row helpers the pure cores use.

Consul's rules kept here:
- ``?dc=`` other than ours: Consul answers 500 "No path to datacenter" for a
  datacenter it cannot reach; so do we (agents of other datacenters never
  share records with us).
- ``tag`` is repeatable and every one must match, compared case-insensitively
  (Consul lower-cases both sides, state/catalog.go serviceTagFilter).
- ``node-meta`` is ``key:value`` (a missing ``:`` means an empty value),
  repeatable, all must match.
- ``near`` sorts by network distance from a node. gossamer has no network
  coordinates, so the only distance known is zero: the named node (or this
  agent's, for ``_agent``) comes first and the rest keep their sorted order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from gossamer.agent.http.api import AGENT_KEY
from gossamer.agent.http.errors import BadRequest, ServerError
from gossamer.agent.live_catalog import LiveCatalog
from gossamer.catalog import merge
from gossamer.catalog.blocking import node_key, response_index
from gossamer.catalog.filter import Expression, FilterError, Struct, parse
from gossamer.catalog.model import Check, NodeRecord, Service

CATALOG_KEY: web.AppKey[LiveCatalog] = web.AppKey("catalog", LiveCatalog)
#: Optional: this agent's node name for ``near=_agent`` (else read from the AgentApi).
NODE_NAME_KEY: web.AppKey[str] = web.AppKey("catalog_node_name", str)

CONNECT_PROXY = "connect-proxy"

T = TypeVar("T")


def catalog_of(request: web.Request) -> LiveCatalog:
    return request.app[CATALOG_KEY]


def local_node_name(request: web.Request) -> str:
    """The node this agent runs as, "" when the app knows none."""
    name = request.app.get(NODE_NAME_KEY)
    if name is not None:
        return name
    agent = request.app.get(AGENT_KEY)
    return agent.node_name if agent is not None else ""


# --- query parameters -------------------------------------------------------------------


@dataclass(frozen=True)
class ReadQuery:
    """The parsed read parameters of one request (absent ones are empty)."""

    tags: tuple[str, ...] = ()
    node_meta: tuple[tuple[str, str], ...] = ()
    near: str = ""
    filter: Expression | None = None


def check_datacenter(request: web.Request, catalog: LiveCatalog) -> None:
    dc = request.query.get("dc", "")
    if dc and dc != catalog.datacenter:
        raise ServerError(
            f"No path to datacenter: dc={dc!r}; this agent serves only {catalog.datacenter!r}"
        )


def parse_filter(request: web.Request, schema: Struct) -> Expression | None:
    text = request.query.get("filter", "")
    if not text.strip():
        return None
    try:
        return parse(text, schema)
    except FilterError as err:
        raise BadRequest(str(err)) from None


def read_query(request: web.Request, catalog: LiveCatalog, schema: Struct) -> ReadQuery:
    """Every common read parameter, checked; raises BadRequest/ServerError naming the bad one."""
    check_datacenter(request, catalog)
    near = request.query.get("near", "")
    if near == "_agent":
        near = local_node_name(request)
    return ReadQuery(
        tags=tuple(t.lower() for t in _all(request, "tag")),
        node_meta=tuple(_key_value(m) for m in _all(request, "node-meta")),
        near=near,
        filter=parse_filter(request, schema),
    )


def _key_value(text: str) -> tuple[str, str]:
    key, _, value = text.partition(":")
    return key, value


def _all(request: web.Request, name: str) -> list[str]:
    return [v for v in request.query.getall(name, []) if v]


# --- the pure part: a frozen view and row helpers ---------------------------------------


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


def view_of(catalog: LiveCatalog) -> View:
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

"""`GET /v1/catalog/*`: the merged catalog as Consul's catalog API answers it.

Each handler parses its parameters (400 before any wait), then answers a
blocking query on the index keys it reads; the pure functions below turn a
`View` into Consul's JSON. The catalog endpoints apply no health filtering.

Consul's answers followed here, where one might guess otherwise:
- ``/v1/catalog/node/<node>`` for an unknown node is ``200`` with body
  ``null`` (Consul returns its nil NodeServices); py-consul reads that as
  ``(index, None)``.
- ``/v1/catalog/node-services/<node>`` for an unknown node is ``200`` with
  ``{"Node": null, "Services": []}``.
- ``?filter=`` on ``/v1/catalog/services`` runs over the ServiceNode rows
  (the ``/v1/catalog/service/<name>`` shape); a name is listed with the tags
  of the rows that pass. On ``/v1/catalog/node/<node>`` and
  ``/node-services/<node>`` it runs over the node's services.
- ``?tag=`` on ``/v1/catalog/connect/<name>`` applies to the proxy's tags.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from gossamer.agent.http.asked import Asked
from gossamer.agent.http.blocking import blocking_answer, blocking_json, web_response
from gossamer.agent.http.catalog_access import catalog_of, read_query
from gossamer.agent.http.render import json_response
from gossamer.catalog.blocking import NODES, SERVICES, connect_key, service_key
from gossamer.catalog.consul_json import catalog_service_row, node_json, service_json
from gossamer.catalog.filter import AGENT_SERVICE, CATALOG_NODE, CATALOG_SERVICE
from gossamer.catalog.model import JsonObject, NodeRecord, Service
from gossamer.catalog.view import (
    ReadQuery,
    View,
    by_connect,
    by_name,
    instances,
    keep,
    meta_matches,
    near_first,
    node_keys,
    view_of,
)

T = TypeVar("T")

# --- pure cores ---------------------------------------------------------------------------


def _node(view: View, record: NodeRecord) -> JsonObject:
    index = view.index(record)
    return node_json(record, create_index=index, modify_index=index)


def _service_row(view: View, pair: tuple[NodeRecord, Service]) -> JsonObject:
    record, service = pair
    index = view.index(record)
    return catalog_service_row(record, service, create_index=index, modify_index=index)


def _services(view: View, record: NodeRecord, query: ReadQuery) -> list[JsonObject]:
    index = view.index(record)
    rows = [
        service_json(s, create_index=index, modify_index=index, external=record.is_external)
        for s in record.services
    ]
    return keep(query.filter, rows, lambda row: row)


def nodes_rows(view: View, query: ReadQuery) -> list[JsonObject]:
    rows = [_node(view, r) for r in view.records() if meta_matches(r, query.node_meta)]
    return near_first(keep(query.filter, rows, lambda row: row), query.near, lambda r: r["Node"])


def services_map(view: View, query: ReadQuery) -> dict[str, list[str]]:
    """``{name: [tags]}``: every service name with the union of its instances' tags."""
    pairs = instances(view, lambda _: True, query.node_meta)
    tags: dict[str, set[str]] = {}
    for _, service in keep(query.filter, pairs, lambda p: _service_row(view, p)):
        tags.setdefault(service.name, set()).update(service.tags)
    return {name: sorted(tags[name]) for name in sorted(tags)}


def service_rows(
    view: View, query: ReadQuery, selects: Callable[[Service], bool]
) -> list[JsonObject]:
    pairs = instances(view, selects, query.node_meta, query.tags)
    rows = [_service_row(view, p) for p in pairs]
    return near_first(keep(query.filter, rows, lambda row: row), query.near, lambda r: r["Node"])


def node_body(view: View, node: str, query: ReadQuery) -> JsonObject | None:
    record = view.record(node)
    if record is None:
        return None
    services = _services(view, record, query)
    return {"Node": _node(view, record), "Services": {s["ID"]: s for s in services}}


def node_services_body(view: View, node: str, query: ReadQuery) -> JsonObject:
    record = view.record(node)
    if record is None:
        return {"Node": None, "Services": []}
    return {"Node": _node(view, record), "Services": _services(view, record, query)}


# --- handlers -----------------------------------------------------------------------------


async def catalog_datacenters(request: web.Request) -> web.Response:
    """Only ours: agents of other datacenters never mix records with us."""
    return json_response([catalog_of(request).datacenter])


async def catalog_nodes(request: web.Request) -> web.Response:
    cat = catalog_of(request)
    query = read_query(request, cat, CATALOG_NODE)
    return await blocking_json(request, cat, [NODES], lambda: nodes_rows(view_of(cat), query))


async def catalog_services(request: web.Request) -> web.Response:
    return await services_answer(request, web_response)


async def catalog_service(request: web.Request) -> web.Response:
    return await service_answer(request, request.match_info["name"], web_response)


def services_answer(asked: Asked, respond: Callable[[bytes, int], T]) -> asyncio.Future[T]:
    """`/v1/catalog/services`' answer: its handler and the light front (front.py) call it."""
    cat = catalog_of(asked)
    query = read_query(asked, cat, CATALOG_SERVICE)
    return blocking_answer(
        asked, cat, [SERVICES], lambda: services_map(view_of(cat), query), respond, prepared=True
    )


def service_answer(
    asked: Asked, name: str, respond: Callable[[bytes, int], T]
) -> asyncio.Future[T]:
    """`/v1/catalog/service/<name>`'s answer: its handler and the light front call it."""
    cat = catalog_of(asked)
    query = read_query(asked, cat, CATALOG_SERVICE)
    return blocking_answer(
        asked,
        cat,
        [service_key(name)],
        lambda: service_rows(view_of(cat), query, by_name(name)),
        respond,
        prepared=True,
    )


async def catalog_connect(request: web.Request) -> web.Response:
    cat, name = catalog_of(request), request.match_info["name"]
    query = read_query(request, cat, CATALOG_SERVICE)
    return await blocking_json(
        request,
        cat,
        [connect_key(name)],
        lambda: service_rows(view_of(cat), query, by_connect(name)),
    )


async def catalog_node(request: web.Request) -> web.Response:
    return await _node_endpoint(request, node_body)


async def catalog_node_services(request: web.Request) -> web.Response:
    return await _node_endpoint(request, node_services_body)


async def _node_endpoint(
    request: web.Request, render: Callable[[View, str, ReadQuery], Any]
) -> web.Response:
    cat, node = catalog_of(request), request.match_info["node"]
    query = read_query(request, cat, AGENT_SERVICE)
    keys = node_keys(view_of(cat), node)
    return await blocking_json(request, cat, keys, lambda: render(view_of(cat), node, query))


def add_catalog_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/catalog/datacenters", catalog_datacenters)
    router.add_get("/v1/catalog/nodes", catalog_nodes)
    router.add_get("/v1/catalog/services", catalog_services)
    router.add_get("/v1/catalog/service/{name}", catalog_service)
    router.add_get("/v1/catalog/connect/{name}", catalog_connect)
    router.add_get("/v1/catalog/node/{node}", catalog_node)
    router.add_get("/v1/catalog/node-services/{node}", catalog_node_services)

"""`GET /v1/health/*`: instances with the checks that decide them, and checks by node or state.

Every node that runs an agent has Consul's ``serfHealth`` node check, derived
from this agent's gossip view (`merge.node_checks`): a node Serf marks
failed keeps its record with ``serfHealth`` critical. External nodes have no
serfHealth, as in Consul.

Rules, as Consul applies them:
- ``?passing`` keeps an instance only if every check that decides it (node
  checks, serfHealth included, and its own) is ``passing``; ``warning`` and
  ``maintenance`` count as not passing.
- ``/v1/health/checks/<service>`` lists the checks of that service's
  instances only, not their node checks.
- ``/v1/health/state/<state>`` takes ``any``, ``passing``, ``warning``,
  ``critical`` or ``maintenance``. Consul answers ``[]`` for any other word;
  gossamer answers 400 naming the valid ones, since a typo otherwise looks
  like a healthy cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from gossamer.agent.http.asked import Asked
from gossamer.agent.http.blocking import blocking_answer, blocking_json, web_response
from gossamer.agent.http.catalog_access import catalog_of, read_query
from gossamer.agent.http.errors import BadRequest
from gossamer.agent.http.render import query_flag
from gossamer.catalog.blocking import CHECKS, NODES, connect_key, service_key
from gossamer.catalog.consul_json import check_json, health_service_row
from gossamer.catalog.filter import HEALTH_CHECK, HEALTH_SERVICE
from gossamer.catalog.model import STATUSES, Check, JsonObject, NodeRecord, Service
from gossamer.catalog.view import (
    ReadQuery,
    View,
    by_connect,
    by_name,
    instance_health,
    keep,
    meta_matches,
    near_first,
    node_keys,
    view_of,
)

STATES = ("any", *STATUSES)
T = TypeVar("T")

# --- pure cores ---------------------------------------------------------------------------


def _check_rows(
    view: View, query: ReadQuery, pairs: list[tuple[NodeRecord, Check]]
) -> list[JsonObject]:
    rows = []
    for record, check in pairs:
        index = view.index(record)
        rows.append(check_json(record.node, check, create_index=index, modify_index=index))
    return near_first(keep(query.filter, rows, lambda row: row), query.near, lambda r: r["Node"])


def node_check_rows(view: View, node: str, query: ReadQuery) -> list[JsonObject]:
    record = view.record(node)
    pairs = [(record, c) for c in view.checks(record)] if record else []
    return _check_rows(view, query, pairs)


def service_check_rows(view: View, name: str, query: ReadQuery) -> list[JsonObject]:
    pairs = []
    for record in view.records():
        if meta_matches(record, query.node_meta):
            ids = {s.id for s in record.services if s.name == name}
            pairs += [(record, c) for c in view.checks(record) if c.service_id in ids]
    return _check_rows(view, query, pairs)


def state_check_rows(view: View, state: str, query: ReadQuery) -> list[JsonObject]:
    pairs = [
        (record, c)
        for record in view.records()
        if meta_matches(record, query.node_meta)
        for c in view.checks(record)
        if state in ("any", c.status)
    ]
    return _check_rows(view, query, pairs)


def service_health_rows(
    view: View, query: ReadQuery, selects: Callable[[Service], bool], *, passing: bool
) -> list[JsonObject]:
    rows = [
        health_service_row(record, service, checks, index=view.index(record))
        for record, service, checks in instance_health(view, selects, query, passing=passing)
    ]
    kept = keep(query.filter, rows, lambda row: row)
    return near_first(kept, query.near, lambda r: str(r["Node"]["Node"]))


# --- handlers -----------------------------------------------------------------------------


async def health_node(request: web.Request) -> web.Response:
    cat, node = catalog_of(request), request.match_info["node"]
    query = read_query(request, cat, HEALTH_CHECK)
    keys = node_keys(view_of(cat), node)
    return await blocking_json(
        request, cat, keys, lambda: node_check_rows(view_of(cat), node, query)
    )


async def health_checks(request: web.Request) -> web.Response:
    cat, name = catalog_of(request), request.match_info["name"]
    query = read_query(request, cat, HEALTH_CHECK)
    return await blocking_json(
        request, cat, [service_key(name)], lambda: service_check_rows(view_of(cat), name, query)
    )


async def health_state(request: web.Request) -> web.Response:
    cat, state = catalog_of(request), request.match_info["state"]
    if state not in STATES:
        raise BadRequest(f"Invalid check state {state!r}: expected one of {', '.join(STATES)}")
    query = read_query(request, cat, HEALTH_CHECK)
    keys = [CHECKS, NODES] if query.node_meta else [CHECKS]
    return await blocking_json(
        request, cat, keys, lambda: state_check_rows(view_of(cat), state, query)
    )


async def health_service(request: web.Request) -> web.Response:
    return await service_health(request, request.match_info["name"], web_response)


def service_health(
    asked: Asked, name: str, respond: Callable[[bytes, int], T]
) -> asyncio.Future[T]:
    """`/v1/health/service/<name>`'s answer: this route's handler and the light front
    (front.py) both call it."""
    return _service_endpoint(asked, service_key(name), by_name(name), respond)


async def health_connect(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return await _service_endpoint(request, connect_key(name), by_connect(name), web_response)


async def health_ingress(request: web.Request) -> web.Response:
    """Ingress gateways for a service: there are none without gateways, so `[]` (with the index)."""
    name = request.match_info["name"]
    return await _service_endpoint(request, service_key(name), lambda s: False, web_response)


def _service_endpoint(
    request: Asked,
    key: str,
    selects: Callable[[Service], bool],
    respond: Callable[[bytes, int], T],
) -> asyncio.Future[T]:
    """Not a coroutine: a parked query holds only the handler's frame (blocking.py)."""
    cat = catalog_of(request)
    query = read_query(request, cat, HEALTH_SERVICE)
    passing = query_flag(request, "passing")
    return blocking_answer(
        request,
        cat,
        [key],
        lambda: service_health_rows(view_of(cat), query, selects, passing=passing),
        respond,
        prepared=True,
    )


def add_health_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/health/node/{node}", health_node)
    router.add_get("/v1/health/checks/{name}", health_checks)
    router.add_get("/v1/health/state/{state}", health_state)
    router.add_get("/v1/health/service/{name}", health_service)
    router.add_get("/v1/health/connect/{name}", health_connect)
    router.add_get("/v1/health/ingress/{name}", health_ingress)

"""`/v1/connect/intentions`: list, and read/write by pair (`/exact`) or by ID (legacy).

Consul's API (api-docs/connect/intentions.mdx), with these choices:
- Reads are blocking queries (``?index=&wait=``, ``X-Consul-Index``) on one
  index key that every intention change bumps, whether written here or
  arrived from a peer. The list is in evaluation order: precedence
  descending, then source and destination. ``filter`` uses Consul's
  intention selectors.
- ``PUT /exact?source=&destination=`` upserts the pair from ``Action`` or
  ``Permissions``, ``Description`` and ``Meta``, and answers ``true``.
  Every intention gets a UUID ``ID``, ``CreatedAt`` and ``UpdatedAt``
  (Consul leaves them out for `/exact` writes since 1.9); the ID is kept
  across updates of the pair, so the legacy routes work on every intention.
  ``ID``, the timestamps and the indexes in a body are ignored: the agent
  assigns them.
- ``POST`` (legacy create) answers ``{"ID": ...}``; a pair that already has
  an intention is **409** with Consul's message ``duplicate intention found:
  web => db (allow)`` (Consul answers 500; 409 says what happened and the
  message still starts the same). ``PUT /<id>`` may move an intention to a
  free pair (409 if taken); unknown IDs are 404.
- Writes answer only once the change is fsynced on this agent.
- Beyond Consul, ``GET /history[?source=&destination=]`` is the agent's
  audit trail of intention changes (agent/replicated/intention_history.py),
  newest first, as a blocking query on the same index.
"""

from __future__ import annotations

from aiohttp import web

from gossamer.agent.http.blocking import blocking_json
from gossamer.agent.http.catalog_access import catalog_of, check_datacenter, parse_filter
from gossamer.agent.http.errors import BadRequest
from gossamer.agent.http.intention_access import (
    fields_named_by_query,
    found,
    intentions_of,
    pair_query,
)
from gossamer.agent.http.render import json_response, read_json
from gossamer.agent.replicated.intention_store import INTENTIONS
from gossamer.catalog.filter import INTENTION
from gossamer.catalog.view import keep
from gossamer.intentions.codec import intention_from_json, intention_to_json


async def list_intentions(request: web.Request) -> web.Response:
    access, cat = intentions_of(request), catalog_of(request)
    check_datacenter(request, cat)
    expr = parse_filter(request, INTENTION)

    def build() -> list[dict[str, object]]:
        rows = [intention_to_json(ixn) for ixn in access.store.current]
        return keep(expr, rows, lambda row: row)

    return await blocking_json(request, cat, [INTENTIONS], build)


async def create_intention(request: web.Request) -> web.Response:
    access = intentions_of(request)
    check_datacenter(request, catalog_of(request))
    ixn = intention_from_json(await read_json(request))
    if ixn.id:
        raise BadRequest("ID: must be empty when creating an intention; the agent assigns one")
    stored = access.store.create(ixn)
    return json_response({"ID": stored.id})


async def exact_get(request: web.Request) -> web.Response:
    access, cat = intentions_of(request), catalog_of(request)
    check_datacenter(request, cat)
    source, dest = pair_query(request)
    return await blocking_json(
        request,
        cat,
        [INTENTIONS],
        lambda: intention_to_json(found(access.store.get(source, dest), f"{source} => {dest}")),
    )


async def exact_put(request: web.Request) -> web.Response:
    access = intentions_of(request)
    check_datacenter(request, catalog_of(request))
    source, dest = pair_query(request)
    body = await read_json(request)
    with fields_named_by_query():
        access.store.upsert(intention_from_json(body, source=source, destination=dest))
    return json_response(True)


async def exact_delete(request: web.Request) -> web.Response:
    access = intentions_of(request)
    check_datacenter(request, catalog_of(request))
    source, dest = pair_query(request)
    with fields_named_by_query():
        access.store.delete(source, dest)
    return json_response(True)


async def id_get(request: web.Request) -> web.Response:
    access, cat = intentions_of(request), catalog_of(request)
    check_datacenter(request, cat)
    ixn_id = request.match_info["id"]
    by_id = access.store.by_id
    return await blocking_json(
        request, cat, [INTENTIONS], lambda: intention_to_json(found(by_id(ixn_id), ixn_id))
    )


async def id_put(request: web.Request) -> web.Response:
    access = intentions_of(request)
    check_datacenter(request, catalog_of(request))
    ixn_id = request.match_info["id"]
    ixn = intention_from_json(await read_json(request))
    if ixn.id and ixn.id != ixn_id:
        raise BadRequest(f"ID: the body names {ixn.id!r} but the URL {ixn_id!r}")
    access.store.update(ixn_id, ixn)
    return json_response(True)


async def id_delete(request: web.Request) -> web.Response:
    access = intentions_of(request)
    check_datacenter(request, catalog_of(request))
    ixn_id = request.match_info["id"]
    access.store.delete_id(ixn_id)
    return json_response(True)


async def history(request: web.Request) -> web.Response:
    access, cat = intentions_of(request), catalog_of(request)
    check_datacenter(request, cat)
    source, dest = request.query.get("source", ""), request.query.get("destination", "")
    if bool(source) != bool(dest):
        raise BadRequest("source and destination go together: give both or neither")
    records = access.store.history.records
    return await blocking_json(request, cat, [INTENTIONS], lambda: records(source, dest))


def add_intention_routes(router: web.UrlDispatcher) -> None:
    """The fixed paths; `add_intention_id_routes` must come after every other intention route."""
    router.add_get("/v1/connect/intentions", list_intentions)
    router.add_post("/v1/connect/intentions", create_intention)
    router.add_get("/v1/connect/intentions/exact", exact_get)
    router.add_put("/v1/connect/intentions/exact", exact_put)
    router.add_delete("/v1/connect/intentions/exact", exact_delete)
    router.add_get("/v1/connect/intentions/history", history)


def add_intention_id_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/connect/intentions/{id}", id_get)
    router.add_put("/v1/connect/intentions/{id}", id_put)
    router.add_delete("/v1/connect/intentions/{id}", id_delete)

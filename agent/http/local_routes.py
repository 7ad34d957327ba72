"""`/v1/agent/service*`, `/v1/agent/check*`, maintenance and local health.

What is registered on this agent, through Consul's agent API. Writes are
durable before they are acknowledged (LocalNode stores first); bad bodies
get 400 naming the field, unknown ids 404 (the error table's, in
agent/http/errors.py), and nothing is half-registered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gossamer.agent.http.api import agent_of
from gossamer.agent.http.blocking import PREPARED_KEY, wait_while
from gossamer.agent.http.catalog_access import catalog_of
from gossamer.agent.http.config_entry_routes import protocol_default
from gossamer.agent.http.errors import BadRequest, NotFound
from gossamer.agent.http.prepared import query_key
from gossamer.agent.http.render import encode_json, json_response, query_flag, read_json
from gossamer.agent.local.node import LocalNode
from gossamer.agent.local.registry import UnknownServiceId
from gossamer.agent.replicated.config_entry_store import CONFIG
from gossamer.catalog.blocking import node_key, parse_wait
from gossamer.catalog.config_defaults import with_service_defaults
from gossamer.catalog.consul_json import check_json, service_to_agent_json
from gossamer.catalog.filter import AGENT_CHECK, AGENT_SERVICE, filter_values
from gossamer.catalog.severity import HEALTH_HTTP, HEALTH_SEVERITY

STATUS_RANK = HEALTH_SEVERITY


def local_of(request: web.Request) -> LocalNode:
    return agent_of(request).local_node


async def service_register(request: web.Request) -> web.Response:
    body = await read_json(request)
    replace = query_flag(request, "replace-existing-checks")
    local_of(request).register_service(body, replace_existing_checks=replace)
    return json_response(None)


async def service_deregister(request: web.Request) -> web.Response:
    local_of(request).deregister_service(request.match_info["service_id"])
    return json_response(None)


def _services_json(request: web.Request) -> dict[str, Any]:
    """Sidecars as Consul's agent serves them: with service-defaults' protocol merged in."""
    local = local_of(request)
    dc, defaults = local.identity.datacenter, protocol_default(request)
    return {
        sid: with_service_defaults(service_to_agent_json(s, dc), defaults)
        for sid, s in local.services().items()
    }


def _content_hash(body: object) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def services_answer(request: web.Request) -> tuple[bytes, str]:
    """The list's JSON bytes and content hash, encoded once per change and `?filter=`.

    Prepared (agent/http/prepared.py), stamped by all the body reads: the
    registry's generation (every local change, config-file ones included)
    and the config entries' index (service-defaults merged into sidecars).
    With ACLs on, the middleware cuts the bytes down per token afterwards, so
    what is kept here is never one token's view.
    """
    key = query_key(request.path, request.query.items())
    stamp = (local_of(request).generation, catalog_of(request).indexes.index_for_any([CONFIG]))
    answers = request.app.get(PREPARED_KEY)
    found = answers.get_noted(key, stamp) if answers is not None else None
    if found is None:
        rows = filter_values(request.query.get("filter"), _services_json(request), AGENT_SERVICE)
        found = encode_json(rows), _content_hash(rows)
        if answers is not None:
            answers.put(key, stamp, *found)
    return found


def _service_body(request: web.Request, service_id: str) -> tuple[bytes, str]:
    body = _services_json(request).get(service_id)
    if body is None:
        raise UnknownServiceId(service_id)
    digest = _content_hash(body)
    return encode_json(body | {"ContentHash": digest}), digest


async def _by_hash(request: web.Request, read: Callable[[], tuple[bytes, str]]) -> web.Response:
    """`read()`'s JSON bytes with `X-Consul-ContentHash`; with `?hash=` equal to the current
    one, answered once it changes or `?wait=` (5 min by default, jittered) runs out."""
    wait_s = parse_wait(request.query.get("wait"))
    body, digest = read()
    wanted = request.query.get("hash")
    if wanted is not None and wanted == digest:
        key = [node_key(local_of(request).identity.node), CONFIG]  # a default may change it
        await wait_while(catalog_of(request), key, wait_s, lambda: read()[1] == wanted)
        body, digest = read()
    response = web.Response(body=body, content_type="application/json")
    response.headers["X-Consul-ContentHash"] = digest
    return response


async def services_list(request: web.Request) -> web.Response:
    """Every local service (`?filter=`); beyond Consul, hash-blocking as for one service, so
    `connect proxy --node` hears of sidecars registered or removed without polling."""
    return await _by_hash(request, lambda: services_answer(request))


async def service_get(request: web.Request) -> web.Response:
    """One local service; `?hash=&wait=` blocks until its content hash changes (Consul)."""
    service_id = request.match_info["service_id"]
    return await _by_hash(request, lambda: _service_body(request, service_id))


async def service_maintenance(request: web.Request) -> web.Response:
    service_id = request.match_info["service_id"]
    local_of(request).set_maintenance(service_id, _maintenance_reason(request))
    return json_response(None)


async def node_maintenance(request: web.Request) -> web.Response:
    local_of(request).set_maintenance(None, _maintenance_reason(request))
    return json_response(None)


def _maintenance_reason(request: web.Request) -> str | None:
    """Consul requires `enable`; the reason is kept when enabling, None when disabling."""
    if "enable" not in request.query:
        raise BadRequest("Missing value for enable")
    if request.query["enable"].lower() not in ("true", "false"):
        raise BadRequest(f"Invalid value for enable: {request.query['enable']!r}")
    return request.query.get("reason", "") if query_flag(request, "enable") else None


async def check_register(request: web.Request) -> web.Response:
    body = await read_json(request)
    local_of(request).register_check(body)
    return json_response(None)


async def check_deregister(request: web.Request) -> web.Response:
    local_of(request).deregister_check(request.match_info["check_id"])
    return json_response(None)


async def check_ttl(request: web.Request) -> web.Response:
    status = {"pass": "passing", "warn": "warning", "fail": "critical"}[request.match_info["verb"]]
    return _update_ttl(request, status, request.query.get("note", ""))


async def check_update(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest('Request decode failed: expected {"Status": ..., "Output": ...}')
    status, output = body.get("Status"), body.get("Output", "")
    if status not in ("passing", "warning", "critical"):
        raise BadRequest(f"Status: must be passing, warning or critical, got {status!r}")
    if not isinstance(output, str):
        raise BadRequest("Output: must be a string")
    return _update_ttl(request, status, output)


def _update_ttl(request: web.Request, status: str, output: str) -> web.Response:
    local_of(request).update_ttl(request.match_info["check_id"], status, output)
    return json_response(None)


async def checks_list(request: web.Request) -> web.Response:
    local = local_of(request)
    node = local.identity.node
    rows = {c.check_id: check_json(node, c) for c in local.checks()}
    return json_response(filter_values(request.query.get("filter"), rows, AGENT_CHECK))


async def service_health(request: web.Request) -> web.Response:
    """200 all passing, 429 a warning, 503 anything critical (`?format=text` too)."""
    local = local_of(request)
    by, value = request.match_info["by"], request.match_info["value"]
    services = [s for s in local.services().values() if (s.name if by == "name" else s.id) == value]
    if not services:
        raise NotFound(f"unknown service {by}: {value}")
    checks = local.checks()
    node_level = [c for c in checks if not c.service_id]
    results = []
    for service in services:
        own = [c for c in checks if c.service_id == service.id] + node_level
        worst = max((c.status for c in own), key=STATUS_RANK.__getitem__, default="passing")
        results.append((service, own, worst))
    overall = max((w for _, _, w in results), key=STATUS_RANK.__getitem__)
    status = HEALTH_HTTP[overall]
    if request.query.get("format") == "text":
        return web.Response(status=status, text=overall)
    dc, node = local.identity.datacenter, local.identity.node
    rows = [
        {
            "AggregatedStatus": worst,
            "Service": service_to_agent_json(service, dc),
            "Checks": [check_json(node, c) for c in own],
        }
        for service, own, worst in results
    ]
    return json_response(rows[0] if by == "id" else rows, status=status)


def add_local_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/agent/service/register", service_register)
    router.add_put("/v1/agent/service/deregister/{service_id}", service_deregister)
    router.add_get("/v1/agent/services", services_list)
    router.add_get("/v1/agent/service/{service_id}", service_get)
    router.add_put("/v1/agent/service/maintenance/{service_id}", service_maintenance)
    router.add_put("/v1/agent/maintenance", node_maintenance)
    router.add_put("/v1/agent/check/register", check_register)
    router.add_put("/v1/agent/check/deregister/{check_id}", check_deregister)
    router.add_put("/v1/agent/check/{verb:pass|warn|fail}/{check_id}", check_ttl)
    router.add_put("/v1/agent/check/update/{check_id}", check_update)
    router.add_get("/v1/agent/checks", checks_list)
    router.add_get("/v1/agent/health/service/{by:name|id}/{value}", service_health)

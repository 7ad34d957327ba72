"""The ACL middleware: every request is checked against the endpoint table before its handler.

Order of a request (agent/acl/endpoints.py has the table):
1. Who is asking: the secret resolves or the request ends 403 `ACL not
   found` (or 429 for a client guessing secrets).
2. Open rows pass; rows naming the resource by path, query or this agent's
   node check it; `by_body` rows read the body (aiohttp keeps it for the
   handler) and check every subject it names (body_needs.py);
   `filtered` rows run the handler and cut its JSON down to what the token
   may read, setting `X-Consul-Results-Filtered-By-ACLs`.
The `/v1/acl/*` routes check their own permissions (token `self` needs none).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gossamer.agent.acl.authorize import denied_message
from gossamer.agent.acl.body_needs import Lookups, body_needs
from gossamer.agent.acl.endpoints import need_for
from gossamer.agent.acl.resolve import PermissionDenied
from gossamer.agent.acl.result_filter import filter_nodes, filter_result
from gossamer.agent.acl.rules import Access
from gossamer.agent.http.acl_access import ACL_KEY, AclAccess, identity_of, require
from gossamer.agent.http.api import AGENT_KEY
from gossamer.agent.http.intention_access import INTENTIONS_KEY
from gossamer.agent.http.render import encode_json
from gossamer.catalog.plain_json import lone_surrogate

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FILTERED_HEADER = "X-Consul-Results-Filtered-By-ACLs"


def _lookups(request: web.Request, node: str) -> Lookups:
    agent = request.app.get(AGENT_KEY)
    intentions = request.app.get(INTENTIONS_KEY)

    def service_name(sid: str) -> str | None:
        service = agent.local_node.services().get(sid) if agent is not None else None
        return service.name if service is not None else None

    def check_service(cid: str) -> str | None:
        checks = agent.local_node.checks() if agent is not None else []
        return next((c.service_name for c in checks if c.check_id == cid), None)

    def destination(iid: str) -> str | None:
        held = intentions.store.by_id(iid) if intentions is not None else None
        return held.destination if held is not None else None

    return Lookups(node, service_name, check_service, destination)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        value = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # the handler answers the 400 in its own words
    return None if lone_surrogate(raw, value) else value  # (render.read_json: a 400 too)


def _json_body(response: web.StreamResponse) -> bytes | None:
    """The JSON bytes of a plain 200 answer, None for anything else (streams, errors)."""
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return None
    if response.status != 200 or not isinstance(response.body, bytes):
        return None
    return response.body


def _nodes_filtered(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    body = _json_body(response)
    if body is None:
        return response
    authorizer = identity_of(request).authorizer
    if authorizer.reads_all("node"):  # management and `node_prefix ""` readers: no decode
        return response
    kept, removed = filter_nodes(
        json.loads(body), lambda kind, name: authorizer.allows(kind, name, Access.READ).allowed
    )
    if removed:
        assert isinstance(response, web.Response)
        response.body = encode_json(kept)
        response.headers[FILTERED_HEADER] = "true"
    return response


def _filtered(request: web.Request, route: str, response: web.StreamResponse) -> web.StreamResponse:
    body = _json_body(response)
    if body is None:
        return response
    assert isinstance(response, web.Response)
    identity = identity_of(request)
    denied: list[tuple[str, str]] = []

    def may(kind: str, name: str) -> bool:
        allowed = identity.authorizer.allows(kind, name, Access.READ).allowed
        if not allowed:
            denied.append((kind, name))
        return allowed

    payload, removed = filter_result(route, json.loads(body), may)
    if payload is None:
        kind, name = denied[0]
        raise PermissionDenied(denied_message(identity.accessor, kind, name, Access.READ))
    if removed:
        response.body = encode_json(payload)
        response.headers[FILTERED_HEADER] = "true"
    return response


@web.middleware
async def acl_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    access: AclAccess = request.app[ACL_KEY]
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else ""
    if not route or route.startswith(("/v1/acl/", "/v1/agent/token/")):
        return await handler(request)
    identity_of(request)
    need = need_for(request.method, route)
    params = request.match_info
    if need.by_body:
        body = await _body(request)
        for kind, name, wanted in body_needs(
            route, request.method, body, params, _lookups(request, access.node)
        ):
            require(request, kind, name, wanted)
    elif need.filtered:
        return _filtered(request, route, await handler(request))
    elif need.kind:
        if need.param:
            name = params.get(need.param, "")
        elif need.query:
            name = request.query.get(need.query, "")
        else:
            name = access.node if need.own_node else ""
        require(request, need.kind, name, need.access)
        if need.nodes_filtered:
            return _nodes_filtered(request, await handler(request))
    return await handler(request)


def install_acl(app: web.Application, access: AclAccess) -> None:
    """Turn enforcement on for `app` (before it starts): the ACL routes answer, the rest check."""
    app[ACL_KEY] = access
    app.middlewares.append(acl_middleware)

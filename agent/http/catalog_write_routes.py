"""`PUT /v1/catalog/register` and `/v1/catalog/deregister`: external nodes owned by this agent.

The work is ExternalNodes' (agent/local/external_nodes.py); this is the HTTP edge.
Like Consul, success answers JSON `true`. Malformed JSON and bad fields are
400 naming the field; a node name this agent may not write (an agent's own,
or an external node another agent owns) is 409.

The integrator sets ``app[EXTERNAL_NODES_KEY]``; without it the routes
answer 500, saying so.
"""

from __future__ import annotations

from aiohttp import web

from gossamer.agent.http.errors import BadRequest, Conflict, HttpError, NotFound, ServerError
from gossamer.agent.http.render import json_response, read_json
from gossamer.agent.local.external_nodes import ExternalNodes
from gossamer.catalog.registration import RegistrationError

EXTERNAL_NODES_KEY: web.AppKey[ExternalNodes] = web.AppKey("external_nodes", ExternalNodes)


def _external_of(request: web.Request) -> ExternalNodes:
    external = request.app.get(EXTERNAL_NODES_KEY)
    if external is None:
        raise ServerError("catalog registration is not available on this agent")
    return external


def _http_error(exc: RegistrationError) -> HttpError:
    kind = {404: NotFound, 409: Conflict}.get(exc.status, BadRequest)
    return kind(str(exc))


async def catalog_register(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        _external_of(request).register(body)
    except RegistrationError as exc:
        raise _http_error(exc) from None
    return json_response(True)


async def catalog_deregister(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        _external_of(request).deregister(body)
    except RegistrationError as exc:
        raise _http_error(exc) from None
    return json_response(True)


def add_catalog_write_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/catalog/register", catalog_register)
    router.add_put("/v1/catalog/deregister", catalog_deregister)

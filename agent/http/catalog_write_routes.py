"""`PUT /v1/catalog/register` and `/v1/catalog/deregister`: external nodes owned by this agent.

The work is ExternalNodes' (agent/local/external_nodes.py); this is the HTTP edge.
Like Consul, success answers JSON `true`. Errors are the error table's
(agent/http/errors.py): malformed JSON and bad fields are 400 naming the
field; a node name this agent may not write (an agent's own, or an external
node another agent owns) or an ID another node uses is 409.

The integrator sets ``app[EXTERNAL_NODES_KEY]``; without it the routes
answer 500, saying so.
"""

from __future__ import annotations

from aiohttp import web

from gossamer.agent.http.render import app_part, json_response, read_json
from gossamer.agent.local.external_nodes import ExternalNodes

EXTERNAL_NODES_KEY: web.AppKey[ExternalNodes] = web.AppKey("external_nodes", ExternalNodes)


def _external_of(request: web.Request) -> ExternalNodes:
    return app_part(request, EXTERNAL_NODES_KEY, "catalog registration is")


async def catalog_register(request: web.Request) -> web.Response:
    body = await read_json(request)
    _external_of(request).register(body)
    return json_response(True)


async def catalog_deregister(request: web.Request) -> web.Response:
    body = await read_json(request)
    _external_of(request).deregister(body)
    return json_response(True)


def add_catalog_write_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/catalog/register", catalog_register)
    router.add_put("/v1/catalog/deregister", catalog_deregister)

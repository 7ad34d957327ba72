"""`/v1/acl/*` and `/v1/agent/token/*`: answered as a Consul agent with ACLs disabled does.

Consul answers every ACL endpoint, and setting the agent's tokens, 401 `ACL
support disabled` when ACLs are off; clients key on that (py-consul raises
its ACLDisabled error), so this is the answer here too, whatever the method
or path below them, until tokens exist.
"""

from __future__ import annotations

from aiohttp import web

ACL_DISABLED = "ACL support disabled"


async def acl_disabled(request: web.Request) -> web.Response:
    return web.Response(status=401, text=ACL_DISABLED)


def add_acl_routes(router: web.UrlDispatcher) -> None:
    router.add_route("*", "/v1/acl/{rest:.*}", acl_disabled)
    router.add_route("*", "/v1/agent/token/{rest:.*}", acl_disabled)

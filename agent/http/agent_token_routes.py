"""`PUT /v1/agent/token/<type>`: set one of the agent's own tokens at runtime, as Consul's.

The body is `{"Token": "<secret>"}` (an empty or missing Token clears what
the API set, and the config's token applies again). The types and their
legacy names are in agent/acl/agent_tokens.py; an unknown one is 404
`Token "x" is unknown`, as Consul answers. It needs `acl = "write"`, as
Consul documents; with ACLs off it is 401 `ACL support disabled`, like the
other ACL endpoints. Answers 200 with an empty body (py-consul's
`agent.token.set` reads the status only); with token persistence on, a token
whose file cannot be written is not set, and the 500 says why.
"""

from __future__ import annotations

from aiohttp import web

from gossamer.agent.acl.agent_tokens import token_type
from gossamer.agent.acl.rules import Access
from gossamer.agent.http.acl_access import acl_of
from gossamer.agent.http.acl_routes import acl_access, acl_disabled
from gossamer.agent.http.errors import BadRequest, NotFound, ServerError
from gossamer.agent.http.render import read_json


async def set_agent_token(request: web.Request) -> web.Response:
    if acl_of(request) is None:
        return await acl_disabled(request)  # the exact 401 of every other /v1/agent/token path
    access = acl_access(request, Access.WRITE)
    name = request.match_info["type"]
    kind = token_type(name)
    if kind is None:
        raise NotFound(f'Token "{name}" is unknown')
    body = await read_json(request)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise BadRequest("Request decode failed: the body must be a JSON object")
    secret = next((v for k, v in body.items() if k.lower() == "token"), "")
    if not isinstance(secret, str):
        raise BadRequest(f"Token: must be a string, got {type(secret).__name__}")
    try:
        access.set_token(kind, secret.strip())
    except OSError as exc:  # acl-tokens.json on a full or read-only disk: not set either
        raise ServerError(f"not stored: {exc}") from None
    return web.Response(status=200)


def add_agent_token_routes(router: web.UrlDispatcher) -> None:
    """Before add_acl_routes, whose catch-all answers every other `/v1/agent/token/*` path."""
    router.add_put("/v1/agent/token/{type}", set_agent_token)

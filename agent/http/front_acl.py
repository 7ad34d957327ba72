"""The light front's ACL check: the middleware's (acl_enforce.py), for the routes it takes.

Through the same table (`need_for`), secret (`secret_from`) and check
(`require_of`): a token that may not read the service gets the middleware's
403, an unknown one its 403 or 429. A read the middleware would cut down
(`nodes_filtered` for a token that may not read every node, `filtered`
rows) is left to aiohttp, which filters it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from multidict import MultiDictProxy

from gossamer.agent.acl.endpoints import need_for
from gossamer.agent.http.acl_access import ACL_KEY, require_of, secret_from


def may_answer(
    app: web.Application,
    transport: asyncio.Transport | None,
    route: str,
    name: str,
    headers: dict[str, str],
    query: MultiDictProxy[str],
) -> bool:
    """True when the front may answer `GET route` itself (always, with ACLs off); False
    leaves it to aiohttp. Raises AclNotFound, TooManyGuesses or PermissionDenied."""
    access = app.get(ACL_KEY)
    if access is None:
        return True
    need = need_for("GET", route)
    if not need.kind or not need.param or need.filtered or need.by_body:
        return False
    peer = transport.get_extra_info("peername") if transport is not None else None
    client = str(peer[0]) if isinstance(peer, list | tuple) else "?"  # aiohttp's `remote`
    identity = access.identify_secret(secret_from(headers, query), client)
    require_of(identity, need.kind, name, need.access)
    return not need.nodes_filtered or identity.authorizer.reads_all("node")

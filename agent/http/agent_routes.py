"""`/v1/agent/*`: this agent, its members and its membership actions.

Shapes follow Consul's agent API so py-consul, Nomad and consul-template
read them unchanged. Member `Status` is Serf's integer (1 alive, 2 leaving,
3 left, 4 failed), as Consul reports it.

While serf is unreachable (killed and being restarted by its supervisor),
`/v1/agent/members` answers from the member watch's last table instead of a
500, as Consul answers from memberlist at all times; the members are the
same values serf's own answer is made of, and `X-Gossamer-Members-Source:
last-seen` says the list was not read from serf just now.
"""

from __future__ import annotations

import re

from aiohttp import web

from gossamer.agent.http.api import agent_of
from gossamer.agent.http.errors import BadRequest, NotFound, ServerError, failing_as
from gossamer.agent.http.render import json_response, member_json, query_flag
from gossamer.gossip.addresses import (
    format_host_port,
    other_family,
    parse_host_port,
    split_host_port,
)
from gossamer.gossip.errors import SerfConnectionError

SERF_LAN_PORT = 8301
MEMBERS_SOURCE_HEADER = "X-Gossamer-Members-Source"  # "last-seen": serf was unreachable


async def agent_self(request: web.Request) -> web.Response:
    """Consul's sections (Config, DebugConfig, Coord, Member, Stats, Meta, xDS) and ours."""
    agent = agent_of(request)
    with failing_as("reading this agent's serf state"):
        info = await agent.self_info()
        members = await agent.serf.members_filtered(name=_exact(agent.node_name))
    info["Member"] = member_json(members[0]) if members else {}
    return json_response(info)


async def agent_members(request: web.Request) -> web.Response:
    if query_flag(request, "wan"):
        return json_response([])  # no WAN pool: one datacenter per gossip ring
    agent = agent_of(request)
    headers: dict[str, str] = {}
    try:
        members = await agent.serf.members()
    except SerfConnectionError:
        members = agent.remembered_members()
        if not members:  # nothing seen yet (serf never answered): the 500 says why
            raise
        headers[MEMBERS_SOURCE_HEADER] = "last-seen"
    response = json_response([member_json(m) for m in sorted(members, key=lambda m: m.name)])
    response.headers.update(headers)
    return response


async def agent_join(request: web.Request) -> web.Response:
    raw = request.match_info["address"]
    with failing_as("invalid join address"):
        host, port = parse_host_port(raw, SERF_LAN_PORT)
    advertise, _ = split_host_port(agent_of(request).rpc_address)
    if why := other_family(advertise, format_host_port(host, port)):
        raise BadRequest(f"join {raw} refused: {why}")
    with failing_as(f"join {raw} failed"):
        joined = await agent_of(request).serf.join([format_host_port(host, port)])
    if joined < 1:
        raise ServerError(f"join {raw} failed: no node answered")
    return json_response(None)


async def agent_leave(request: web.Request) -> web.Response:
    agent_of(request).request_shutdown(leave=True)
    return json_response(None)


async def agent_force_leave(request: web.Request) -> web.Response:
    node = request.match_info["node"]
    serf = agent_of(request).serf
    if not await serf.members_filtered(name=_exact(node)):
        raise NotFound(f"unknown node: {node}")
    prune = query_flag(request, "prune")
    with failing_as(f"force-leave {node} failed"):
        await serf.force_leave(node, prune=prune)
    return json_response(None)


async def agent_reload(request: web.Request) -> web.Response:
    with failing_as("Failed reloading"):
        await agent_of(request).reload()
    return json_response(None)


def _exact(name: str) -> str:
    """Serf filters by regex; escape the name so it matches itself only."""
    return re.escape(name)


def add_agent_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/agent/self", agent_self)
    router.add_get("/v1/agent/members", agent_members)
    router.add_put("/v1/agent/join/{address}", agent_join)
    router.add_put("/v1/agent/leave", agent_leave)
    router.add_put("/v1/agent/force-leave/{node}", agent_force_leave)
    router.add_put("/v1/agent/reload", agent_reload)

"""`/v1/status/*` without a server tier.

Consul answers with the Raft leader and peers. gossamer has no servers, so
the leader is this agent's own RPC address (the agent a client talks to is
authoritative for what it serves) and the peers are the RPC addresses of the
alive members. Clients that poll the leader to check that the cluster is up
(py-consul, Nomad, consul-template) get a non-empty answer as they expect.
"""

from __future__ import annotations

from aiohttp import web

from gossamer.agent.http.api import agent_of
from gossamer.agent.http.render import json_response
from gossamer.gossip.tags import rpc_address


async def status_leader(request: web.Request) -> web.Response:
    return json_response(agent_of(request).rpc_address)


async def status_peers(request: web.Request) -> web.Response:
    members = await agent_of(request).serf.members()
    peers = sorted(
        addr for m in members if m.status == "alive" and (addr := rpc_address(m)) is not None
    )
    return json_response(peers)


def add_status_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/status/leader", status_leader)
    router.add_get("/v1/status/peers", status_peers)

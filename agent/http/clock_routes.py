"""`GET /v1/agent/clock`: each peer's clock against this agent's (gossamer's own endpoint).

Answers `{"Node": <this agent>, "Offsets": {node: seconds}, "Uncertainty":
{node: seconds}}`; a peer's offset is its clock minus ours, measured by the
`gossamer-clock` serf query (gossip/clock_query.py). Peers that did not
answer within the query's second are absent. `gossamer check` reads it.
"""

from __future__ import annotations

from aiohttp import web

from gossamer.agent.http.api import agent_of
from gossamer.agent.http.errors import failing_as
from gossamer.agent.http.render import json_response
from gossamer.gossip.clock_query import ask


async def agent_clock(request: web.Request) -> web.Response:
    agent = agent_of(request)
    with failing_as("asking the peers' clocks failed"):
        clocks = await ask(agent.serf, agent.node_name)
    return json_response(
        {
            "Node": agent.node_name,
            "Offsets": {n: round(c.offset_s, 6) for n, c in clocks.items()},
            "Uncertainty": {n: round(c.uncertainty_s, 6) for n, c in clocks.items()},
        }
    )


def add_clock_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/agent/clock", agent_clock)

"""What the HTTP handlers need from the running agent, as a narrow protocol.

Handlers depend on this, not on the Agent class, so they stay thin and the
composition root stays the only place that knows how things are wired.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from gossamer.agent.http.asked import Asked
from gossamer.agent.local.node import LocalNode
from gossamer.gossip.members import Member
from gossamer.gossip.rpc import SerfRpcClient


class AgentApi(Protocol):
    @property
    def serf(self) -> SerfRpcClient: ...

    async def self_info(self) -> dict[str, Any]:
        """The body of /v1/agent/self but `Member`: Config, DebugConfig, Coord, Stats, …"""
        ...

    def remembered_members(self) -> list[Member]:
        """The member watch's last table: `/v1/agent/members` while serf restarts."""
        ...

    @property
    def rpc_address(self) -> str: ...

    @property
    def node_name(self) -> str: ...

    async def reload(self) -> list[str]:
        """Reload config files; raises ConfigError, returns the changes."""
        ...

    def request_shutdown(self, *, leave: bool) -> None: ...

    @property
    def local_node(self) -> LocalNode:
        """What is registered on this agent (services, checks, maintenance)."""
        ...


AGENT_KEY: web.AppKey[AgentApi] = web.AppKey("agent", AgentApi)


def agent_of(request: Asked) -> AgentApi:
    return request.app[AGENT_KEY]
